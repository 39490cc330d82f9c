//! Turning findings into one decision.
//!
//! Scores of all findings are summed and compared with the policy thresholds;
//! a finding may force an action, and the strongest of the forced and the
//! scored action wins. A check that failed contributes through its
//! `on_error` policy: `tempfail` makes the whole verdict temporary (EXO will
//! retry), `quarantine` forces quarantine, `ignore` only logs.
//! The verdict never contains SMTP text: the session maps it to a reply.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What happens to a message, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Deliver,
    /// Deliver with `X-CLOUD-SEC-AV-SCL: true`.
    Junk,
    /// Keep in the quarantine store, deliver nothing.
    Quarantine,
    /// Refuse with 550 at end of data.
    Reject,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Deliver => "deliver",
            Action::Junk => "junk",
            Action::Quarantine => "quarantine",
            Action::Reject => "reject",
        }
    }

    pub(crate) const CHOICES: [(&'static str, Action); 4] = [
        ("deliver", Action::Deliver),
        ("junk", Action::Junk),
        ("quarantine", Action::Quarantine),
        ("reject", Action::Reject),
    ];
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a check does when it fails or times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Ignore,
    Tempfail,
    Quarantine,
}

impl OnError {
    pub(crate) const CHOICES: [(&'static str, OnError); 3] = [
        ("ignore", OnError::Ignore),
        ("tempfail", OnError::Tempfail),
        ("quarantine", OnError::Quarantine),
    ];
}

/// One observation of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Name of the check that produced it (filled in by the pipeline).
    #[serde(default)]
    pub check: String,
    pub score: f64,
    /// Short machine-readable tag, e.g. "blocked-extension".
    pub tag: String,
    /// Human-readable detail for the log; never sent to the client.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<Action>,
}

impl Finding {
    pub(crate) fn new(score: f64, tag: impl Into<String>, reason: impl Into<String>) -> Finding {
        Finding {
            check: String::new(),
            score,
            tag: tag.into(),
            reason: reason.into(),
            force: None,
        }
    }

    pub(crate) fn forcing(mut self, action: Action) -> Finding {
        self.force = Some(action);
        self
    }
}

/// Score thresholds of a policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub junk: f64,
    pub quarantine: f64,
    pub reject: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            junk: 5.0,
            quarantine: 10.0,
            reject: 20.0,
        }
    }
}

/// A check that could not give an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckFailure {
    pub check: String,
    pub error: String,
}

/// The decision for one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub action: Action,
    pub score: f64,
    pub findings: Vec<Finding>,
    #[serde(default)]
    pub failures: Vec<CheckFailure>,
    /// A failing check asked for a temporary failure: answer 4xx, keep nothing.
    #[serde(default)]
    pub tempfail: bool,
}

impl Verdict {
    pub(crate) fn decide(
        thresholds: &Thresholds,
        findings: Vec<Finding>,
        failures: Vec<(CheckFailure, OnError)>,
    ) -> Verdict {
        // `+ 0.0` turns the -0.0 of an empty sum into 0.0 for display.
        let score: f64 = findings.iter().map(|f| f.score).sum::<f64>() + 0.0;
        let scored = if score >= thresholds.reject {
            Action::Reject
        } else if score >= thresholds.quarantine {
            Action::Quarantine
        } else if score >= thresholds.junk {
            Action::Junk
        } else {
            Action::Deliver
        };
        let forced = findings.iter().filter_map(|f| f.force).max();
        let failed_closed = failures
            .iter()
            .any(|(_, on_error)| *on_error == OnError::Quarantine)
            .then_some(Action::Quarantine);
        let action = [Some(scored), forced, failed_closed]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(Action::Deliver);
        let tempfail = failures.iter().any(|(_, on_error)| *on_error == OnError::Tempfail);
        Verdict {
            action,
            score,
            findings,
            failures: failures.into_iter().map(|(f, _)| f).collect(),
            tempfail,
        }
    }

    /// Tags of the strongest findings first, at most `n`.
    pub(crate) fn top_reasons(&self, n: usize) -> Vec<&Finding> {
        let mut sorted: Vec<&Finding> = self.findings.iter().collect();
        sorted.sort_by(|a, b| {
            b.force
                .cmp(&a.force)
                .then(b.score.partial_cmp(&a.score).unwrap_or(std::cmp::Ordering::Equal))
        });
        sorted.truncate(n);
        sorted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(score: f64) -> Finding {
        Finding::new(score, "t", "r")
    }

    #[test]
    fn scores_are_summed_against_thresholds() {
        let t = Thresholds::default();
        assert_eq!(Verdict::decide(&t, vec![], vec![]).action, Action::Deliver);
        assert_eq!(Verdict::decide(&t, vec![f(2.0), f(3.0)], vec![]).action, Action::Junk);
        assert_eq!(Verdict::decide(&t, vec![f(9.9)], vec![]).action, Action::Junk);
        assert_eq!(Verdict::decide(&t, vec![f(10.0)], vec![]).action, Action::Quarantine);
        assert_eq!(
            Verdict::decide(&t, vec![f(15.0), f(5.0)], vec![]).action,
            Action::Reject
        );
        assert_eq!(
            Verdict::decide(&t, vec![f(-3.0), f(6.0)], vec![]).action,
            Action::Deliver
        );
    }

    #[test]
    fn a_forced_action_wins_over_a_weaker_score() {
        let t = Thresholds::default();
        let v = Verdict::decide(&t, vec![f(0.0).forcing(Action::Quarantine)], vec![]);
        assert_eq!(v.action, Action::Quarantine);
        let v = Verdict::decide(&t, vec![f(25.0), f(0.0).forcing(Action::Junk)], vec![]);
        assert_eq!(v.action, Action::Reject);
    }

    #[test]
    fn failures_follow_their_on_error_policy() {
        let t = Thresholds::default();
        let fail = |p| {
            (
                CheckFailure {
                    check: "c".into(),
                    error: "down".into(),
                },
                p,
            )
        };
        let v = Verdict::decide(&t, vec![], vec![fail(OnError::Ignore)]);
        assert_eq!((v.action, v.tempfail), (Action::Deliver, false));
        let v = Verdict::decide(&t, vec![], vec![fail(OnError::Tempfail)]);
        assert!(v.tempfail);
        let v = Verdict::decide(&t, vec![], vec![fail(OnError::Quarantine)]);
        assert_eq!(v.action, Action::Quarantine);
    }
}
