use super::*;

#[test]
fn dot_stuffing_is_the_same_in_any_windows() {
    let msg = b"a\r\n.b\r\n..c\r\n.\r\nend";
    let whole = dot_stuff(&[msg]);
    assert_eq!(whole, b"a\r\n..b\r\n...c\r\n..\r\nend\r\n.\r\n");
    for split in 0..msg.len() {
        let (x, y) = msg.split_at(split);
        assert_eq!(dot_stuff(&[x, y]), whole, "split at {split}");
        let mut s = DotStuffer::default();
        let mut out = Vec::new();
        for b in msg.chunks(1) {
            s.push(b, &mut out);
        }
        s.finish(&mut out);
        assert_eq!(out, whole);
    }
    assert_eq!(dot_stuff(&[b"x\r", b"\n"]), b"x\r\n.\r\n", "CRLF split across pieces");
}

#[test]
fn dot_stuffing() {
    assert_eq!(dot_stuff(&[b"a\r\n.b\r\n", b".", b"c"]), b"a\r\n..b\r\n..c\r\n.\r\n");
    assert_eq!(dot_stuff(&[b".\r\n"]), b"..\r\n.\r\n");
}

#[test]
fn capabilities() {
    let caps = Caps::parse("mx.example Hello\nSIZE 157286400\nPIPELINING\nCHUNKING\nstarttls\nDSN");
    assert!(caps.pipelining && caps.chunking && caps.starttls && caps.dsn);
    assert_eq!(caps.size, Some(157286400));
    assert!(!caps.smtputf8);
}

#[test]
fn only_server_5xx_is_permanent() {
    let rejected = |code| ClientError::Rejected {
        server: "s".into(),
        stage: "RCPT",
        reply: Reply::new(code, (0, 0, 0), "x"),
    };
    assert!(rejected(550).is_permanent());
    assert!(!rejected(450).is_permanent());
    assert!(!ClientError::NoStartTls { server: "s".into() }.is_permanent());
}
