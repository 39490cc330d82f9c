//! The usual test setup in one place: a CA, the gateway's certificate, a
//! private Postfix downstream, and gateways started against it.

use super::gateway::{Gateway, Options, config_text};
use super::pki::{Leaf, Pki};
use super::postfix::{Postfix, Tls};

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub server: Leaf,
    pub downstream: Postfix,
}

impl Stack {
    /// A downstream requiring TLS with a certificate from the test CA.
    pub fn new() -> Stack {
        Stack::with(Tls::Required, true, &["localhost", "127.0.0.1"])
    }

    /// A downstream requiring TLS that keeps what it accepts in its queue
    /// (`Postfix::queued` reads the envelopes).
    pub fn keeping() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"));
        let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
        let down_cert = pki.leaf("downstream", &["localhost", "127.0.0.1"]);
        let downstream = Postfix::start_keeping(&dir.path().join("postfix"), Tls::Required, Some(&down_cert));
        Stack {
            dir,
            pki,
            server,
            downstream,
        }
    }

    /// A downstream with the given TLS mode, a trusted (or untrusted) certificate for `names`.
    pub fn with(tls: Tls, trusted: bool, names: &[&str]) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"));
        let server = pki.leaf("gateway", &["localhost", "127.0.0.1"]);
        let down_cert = if trusted {
            pki.leaf("downstream", names)
        } else {
            pki.untrusted("downstream", names)
        };
        let downstream = Postfix::start(&dir.path().join("postfix"), tls, Some(&down_cert));
        Stack {
            dir,
            pki,
            server,
            downstream,
        }
    }

    /// Starts a gateway (state under `gw/`) relaying to the downstream.
    pub fn gateway(&self, opts: Options) -> Gateway {
        let opts = Options {
            deliver_to: if opts.deliver_to == Options::default().deliver_to {
                vec![self.downstream.addr()]
            } else {
                opts.deliver_to
            },
            ..opts
        };
        let gw_dir = self.dir.path().join("gw");
        std::fs::create_dir_all(&gw_dir).unwrap();
        Gateway::start_with_text(&gw_dir, &config_text(&gw_dir, &self.pki, &self.server, &opts))
    }
}
