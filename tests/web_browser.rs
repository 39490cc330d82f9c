//! The admin's daily task in a real headless Chromium (Debian's `chromium`
//! driven by `chromium-driver` over WebDriver): log in, find the message a
//! real clamd quarantined (EICAR) by its sender, open it, release it, and see
//! it arrive at the Postfix downstream with `X-CLOUD-SEC-AV-SCL: false`.
//! Screenshots of the search and message pages go to `target/screenshots/`.

mod support;

use std::time::Duration;

use support::web::{PASSWORD, Setup, delivered, infected, scl, web_addr};
use support::webdriver::{Browser, screenshot_dir};

/// The sender the admin searches for.
const SENDER: &str = "billing@supplier.example";

#[test]
fn an_admin_finds_and_releases_a_quarantined_message_in_chromium() {
    let s = Setup::start();
    let subject = "Invoice 4711 <please pay>";
    let id = s.send(
        SENDER,
        "user@contoso.com",
        &infected(SENDER, "user@contoso.com", subject, "invoice-4711.pdf.exe"),
    );
    // Some unrelated mail from another sender, which the search must leave out.
    let other = s.send(
        "someone@else.example",
        "user@contoso.com",
        &infected("someone@else.example", "user@contoso.com", "unrelated", "x.txt"),
    );
    let base = format!("https://localhost:{}", web_addr(&s.gw).port());

    let browser = Browser::start();
    browser.goto(&format!("{base}/search"));
    // Not logged in: the login page.
    assert!(browser.url().ends_with("/login"), "{}", browser.url());
    browser.type_into("input[name=name]", "alice");
    browser.type_into("input[name=password]", PASSWORD);
    browser.click("button[type=submit]");
    assert!(browser.wait_url("/search"), "{}: {}", browser.url(), browser.source());

    // Search by sender (the store writes asynchronously: search until it is there).
    // The click can return before the browser has left the unfiltered
    // /search page, which lists every message, the other one too: only a page
    // whose sender field holds the sender is this search's answer (typing
    // sets the field's value, not its value attribute in the page source;
    // only the server's answer has that).
    let searched = format!("value=\"{SENDER}\"");
    let found = support::wait_for(Duration::from_secs(60), || {
        browser.goto(&format!("{base}/search"));
        browser.type_into("input[name=sender]", SENDER);
        browser.click("form.search button[type=submit]");
        let page = support::wait_for(Duration::from_secs(10), || {
            Some(browser.source()).filter(|page| page.contains(&searched))
        })?;
        page.contains(&format!("/message/{id}")).then_some(page)
    })
    .expect("the quarantined message is found by its sender");
    assert!(
        !found.contains(&format!("/message/{other}")),
        "only that sender's mail is listed"
    );
    assert!(browser.text("table.results").contains("Invoice 4711 <please pay>"));
    let dir = screenshot_dir();
    browser.screenshot(&dir.join("web-search.png"));

    // Open it: headers, text, the attachment listed (never opened), the finding.
    browser.click(&format!("a[href='/message/{id}']"));
    assert!(browser.wait_url(&format!("/message/{id}")), "{}", browser.url());
    assert_eq!(browser.text("h1.subject"), subject);
    let page = browser.text("main");
    assert!(page.contains("invoice-4711.pdf.exe"), "{page}");
    assert!(page.contains("Gateway.Test.EICAR"), "{page}");
    assert!(page.contains("held in quarantine"), "{page}");
    browser.screenshot(&dir.join("web-message.png"));

    // Release it. Like the search's, this click can return while the
    // message page is still shown: read the outcome once the browser is on
    // the page the form posted to.
    browser.click("section.actions button.primary");
    assert!(browser.wait_url(&format!("/message/{id}/release")), "{}", browser.url());
    assert!(
        browser.text("main").contains("Released to user@contoso.com"),
        "{}",
        browser.text("main")
    );
    let got = s.stack.downstream.wait_messages(1, Duration::from_secs(60));
    let released = delivered(&got, subject);
    assert_eq!(released.len(), 1, "released once");
    assert_eq!(released[0].recipient, "user@contoso.com");
    assert_eq!(scl(released[0]), vec!["false"]);

    // Back on the message page it is no longer held, and nothing else left:
    // the other message is still held (the quarantine index says so at once;
    // no waiting to see whether a second copy arrives).
    browser.goto(&format!("{base}/message/{id}"));
    assert!(!browser.text("main").contains("held in quarantine"));
    browser.goto(&format!("{base}/message/{other}"));
    assert!(
        browser.text("main").contains("held in quarantine"),
        "the other message stays held: {}",
        browser.text("main")
    );
}
