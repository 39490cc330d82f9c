//! HTML is read as a browser parses it: attributes quoted or not, every
//! character reference the HTML standard names, raw-text elements, `<base>`;
//! what a reader does not see is not text; hostile input ends cleanly.
//! `tests/view_browser.rs` checks the same against headless Chromium.

use super::*;

fn links_of(html: &str) -> Vec<(String, Option<String>, LinkKind)> {
    read(html, 1 << 20)
        .links
        .into_iter()
        .map(|l| (l.url, l.text, l.kind))
        .collect()
}

fn anchor(url: &str, text: &str) -> (String, Option<String>, LinkKind) {
    (url.into(), Some(text.into()), LinkKind::Anchor)
}

fn other(url: &str, kind: LinkKind) -> (String, Option<String>, LinkKind) {
    (url.into(), None, kind)
}

fn text(html: &str) -> String {
    read(html, 1 << 20).text
}

#[test]
fn attributes_are_read_quoted_unquoted_and_entity_encoded() {
    assert_eq!(
        links_of(
            r#"<A HREF=http://a.example/1>one</A>
           <a title="x > y" href = 'http&colon;//b.example/2?x=1&amp;y=2'>two</a>
           <a href="&#104;&#x74;tp://c.example/3">th<b>r</b>ee&nbsp;</a>
           <img SRC="https://d.example/i.png"><form action=https://e.example/post></form>"#
        ),
        vec![
            anchor("http://a.example/1", "one"),
            anchor("http://b.example/2?x=1&y=2", "two"),
            anchor("http://c.example/3", "three"),
            other("https://d.example/i.png", LinkKind::Resource),
            other("https://e.example/post", LinkKind::Form),
        ]
    );
}

#[test]
fn every_named_reference_decodes_and_new_lines_vanish_from_urls() {
    // The 35-entity table this replaced knew none of &DoubleRightArrow; or
    // &NoBreak;, and left "ht&NewLine;tps" as a non-link.
    assert_eq!(
        links_of(
            "<a href='ht&NewLine;tps&colon;&sol;&sol;evil&period;example&sol;a'>x</a>\
             <a href='https&#58//evil&#46example/b'>y</a>\
             <a href='&#x68&#x74&#x74&#x70&#x73://evil.example/c'>z</a>"
        ),
        vec![
            anchor("https://evil.example/a", "x"),
            anchor("https://evil.example/b", "y"),
            anchor("https://evil.example/c", "z"),
        ]
    );
    assert_eq!(text("a&DoubleRightArrow;b&NoBreak;c &lt;d&gt"), "a⇒b\u{2060}c <d>");
}

#[test]
fn legacy_references_in_attributes_follow_the_standard() {
    // In an attribute, "&copy" followed by "=" or a letter stays as written
    // (a query string), but decodes in text.
    assert_eq!(
        links_of("<a href='https://x.example/?a=1&copy=2&not=3'>&copy=2</a>"),
        vec![anchor("https://x.example/?a=1&copy=2&not=3", "©=2")]
    );
}

#[test]
fn the_first_base_href_resolves_every_link_wherever_it_stands() {
    assert_eq!(
        links_of(
            "<a href='/login'>Sign in</a><base href='https://evil.example/x/'>\
             <base href='https://second.example/'><img src=pic.png>"
        ),
        vec![
            anchor("https://evil.example/login", "Sign in"),
            other("https://evil.example/x/pic.png", LinkKind::Resource),
        ]
    );
    // Without a base, a relative link stays as written.
    assert_eq!(links_of("<a href=' /login '>x</a>"), vec![anchor("/login", "x")]);
}

#[test]
fn raw_text_elements_hide_markup_and_noscript_holds_markup() {
    assert_eq!(
        links_of(
            "<!-- <a href=http://comment.example/>c</a> --><script>var u='<a href=http://script.example/>'</script>\
             <style>.x{background:url(http://style.example/)}</style><textarea><a href=http://ta.example/></textarea>\
             <title><a href=http://title.example/></title>\
             <noscript><a href=https://noscript.example/>n</a></noscript>\
             <p>Visit www.visible.example/page.</p><td>http://cell.example/</td><td>next</td>"
        ),
        vec![
            anchor("https://noscript.example/", "n"),
            // A text area shows its text as it is: a URL in it is text.
            other("http://ta.example/", LinkKind::Text),
            other("www.visible.example/page", LinkKind::Text),
            other("http://cell.example/", LinkKind::Text),
        ]
    );
}

#[test]
fn svg_content_is_not_raw_text_and_breaks_out_on_html() {
    assert_eq!(
        links_of(
            "<svg><style><a href='https://in-svg.example/'>s</a></style></svg><style><a href=https://no.example/></style>"
        ),
        // SVG's <style> is no raw text, but its text is not shown either.
        vec![anchor("https://in-svg.example/", "")]
    );
    assert_eq!(
        links_of("<svg><p><style><a href=https://no.example/></style><a href=https://yes.example/>y</a>"),
        vec![anchor("https://yes.example/", "y")]
    );
}

#[test]
fn meta_refresh_and_forms_are_recorded_and_scripts_are_not_text() {
    let doc = read(
        "<meta http-equiv=Refresh content=\"0; URL='https://go.example/'\">\
         <form action='https://harvest.example/p'><input name=u><input type=PassWord name=p></form>\
         <form><input type=text></form><script>eval(atob('YWxlcnQ='))</script>",
        1 << 20,
    );
    assert_eq!(
        doc.links.iter().map(|l| (l.url.as_str(), l.kind)).collect::<Vec<_>>(),
        vec![
            ("https://go.example/", LinkKind::Refresh),
            ("https://harvest.example/p", LinkKind::Form)
        ]
    );
    assert_eq!(
        doc.forms,
        vec![
            Form {
                action: Some("https://harvest.example/p".into()),
                password: true
            },
            Form {
                action: None,
                password: false
            }
        ]
    );
    assert!(!doc.text.contains("eval"), "{:?}", doc.text);
}

#[test]
fn text_reads_as_a_browser_shows_it() {
    let html = "<html><head><title>T</title><style>p{color:red}</style></head><body>\
<p>Win&nbsp;a <b>FREE</b> prize</p><!-- hidden <p>x</p> --><script>var a='<p>no</p>';</script>\
<p>&#52;111 &#x31;111 &amp; 1 &lt; 2 &bogus; a < b</p></body></html>";
    assert_eq!(text(html), "Win a FREE prize\n4111 1111 & 1 < 2 &bogus; a < b\n");
    assert_eq!(text("41<span>11</span>"), "4111");
    assert_eq!(text("<table><tr><td>a</td><td>b</td></tr></table>"), "a b\n");
    assert_eq!(
        text("&#0000086;iagra &#x56iagra V&shy;iagra"),
        "Viagra Viagra V\u{AD}iagra"
    );
    assert_eq!(text("<section>4111</section><center>1111</center>"), "4111\n1111\n");
    assert_eq!(text("pay&Tab;now&NewLine;&amp friends"), "pay now & friends");
    assert_eq!(text("&#xD800;&#0;&#x110000;"), "\u{FFFD}\u{FFFD}\u{FFFD}");
}

#[test]
fn text_is_capped() {
    let doc = read(&"é".repeat(10_000), 100);
    assert!(doc.text.len() <= 100, "{}", doc.text.len());
}

#[test]
fn broken_html_never_panics() {
    let pieces = [
        "<",
        ">",
        "<a",
        " href=",
        "\"",
        "'",
        "http://x.example/",
        "&#",
        "&amp",
        "<!--",
        "-->",
        "</a>",
        "<script>",
        "<svg>",
        "<![CDATA[",
        "]]>",
        "<base href=",
        "é",
        "日本",
        "\u{200B}",
        "\0",
        "=",
        "/",
        " ",
        "<meta http-equiv=refresh content=",
        "url=",
        "<",
        "&#x",
        "<textarea>",
        "<plaintext>",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..2000 {
        let mut doc = String::new();
        for _ in 0..40 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            doc.push_str(pieces[(state % pieces.len() as u64) as usize]);
        }
        let _ = read(&doc, 4096);
    }
}

#[test]
fn an_anchor_around_a_table_stays_open_across_its_cells() {
    // As the tree builder's markers do: a new <a> in a cell does not close
    // the one outside the table, whose text includes the cell's.
    assert_eq!(
        links_of("<a href=https://out.example/>out <table><tr><td><a href=https://in.example/>in</a><td>next</table>"),
        vec![
            anchor("https://in.example/", "in"),
            anchor("https://out.example/", "out in next"),
        ]
    );
    assert_eq!(
        links_of("<a href=https://one.example/>1<a href=https://two.example/>2</a>"),
        vec![anchor("https://one.example/", "1"), anchor("https://two.example/", "2")]
    );
}
