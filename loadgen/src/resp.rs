//! RESP2 (the Redis protocol): encoding commands and frames, and incremental parsing.
//!
//! Parsing works on whatever bytes have arrived: `Ok(None)` means "need more", `Err` means the
//! peer sent something that is not RESP (garbage). Every length is bounded so a hostile or broken
//! peer cannot make us allocate without limit; the caller drops such a connection.

use std::io::Write as _;

use thiserror::Error;

/// Largest bulk string accepted (Redis allows 512 MiB; a load generator never needs that).
pub const MAX_BULK_LEN: i64 = 64 << 20;
/// Largest array accepted.
pub const MAX_ARRAY_LEN: i64 = 1 << 20;
/// Longest `+`/`-`/`:`/length line accepted before its CRLF.
pub const MAX_LINE_LEN: usize = 64 << 10;
/// Deepest nesting of arrays accepted.
pub const MAX_DEPTH: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Integer(i64),
    Bulk(Vec<u8>),
    /// `$-1`: a missing value (GET of an absent key).
    Null,
    Array(Vec<Frame>),
    /// `*-1`.
    NullArray,
}

impl Frame {
    pub fn simple(s: &str) -> Frame {
        Frame::Simple(s.as_bytes().to_vec())
    }

    pub fn error(s: &str) -> Frame {
        Frame::Error(s.as_bytes().to_vec())
    }
}

/// Why bytes are not RESP.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("unexpected byte {0:#04x} where a RESP type marker was expected")]
    BadType(u8),
    #[error("invalid integer {0:?}")]
    BadInteger(String),
    #[error("line longer than {MAX_LINE_LEN} bytes without CRLF")]
    LineTooLong,
    #[error("bulk string not terminated by CRLF")]
    MissingCrlf,
    #[error("length {0} out of range")]
    BadLength(i64),
    #[error("arrays nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("expected a command (array of bulk strings)")]
    NotACommand,
}

/// Parses one frame from the start of `buf`: the frame and the bytes it used, or None if incomplete.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, ParseError> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Frame, usize)>, ParseError> {
    let Some(&marker) = buf.get(pos) else { return Ok(None) };
    // Reject garbage on its first byte, before waiting for a line that may never come.
    if !matches!(marker, b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(ParseError::BadType(marker));
    }
    let Some((line, next)) = line(buf, pos + 1)? else { return Ok(None) };
    let frame = match marker {
        b'+' => (Frame::Simple(line.to_vec()), next),
        b'-' => (Frame::Error(line.to_vec()), next),
        b':' => (Frame::Integer(integer(line)?), next),
        b'$' => {
            let n = integer(line)?;
            if n == -1 {
                return Ok(Some((Frame::Null, next)));
            }
            if !(0..=MAX_BULK_LEN).contains(&n) {
                return Err(ParseError::BadLength(n));
            }
            let end = next + n as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ParseError::MissingCrlf);
            }
            (Frame::Bulk(buf[next..end].to_vec()), end + 2)
        }
        _ => {
            let n = integer(line)?;
            if n == -1 {
                return Ok(Some((Frame::NullArray, next)));
            }
            if !(0..=MAX_ARRAY_LEN).contains(&n) {
                return Err(ParseError::BadLength(n));
            }
            if n > 0 && depth >= MAX_DEPTH {
                return Err(ParseError::TooDeep);
            }
            let mut items = Vec::with_capacity((n as usize).min(64));
            let mut p = next;
            for _ in 0..n {
                match parse_at(buf, p, depth + 1)? {
                    Some((f, q)) => {
                        items.push(f);
                        p = q;
                    }
                    None => return Ok(None),
                }
            }
            (Frame::Array(items), p)
        }
    };
    Ok(Some(frame))
}

/// The bytes from `start` up to the next CRLF and the position after it.
fn line(buf: &[u8], start: usize) -> Result<Option<(&[u8], usize)>, ParseError> {
    let rest = &buf[start.min(buf.len())..];
    let window = &rest[..rest.len().min(MAX_LINE_LEN + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some((&rest[..i], start + i + 2))),
        None if rest.len() > MAX_LINE_LEN + 1 => Err(ParseError::LineTooLong),
        None => Ok(None),
    }
}

/// A strict decimal i64: optional '-', at least one digit, nothing else, no overflow.
fn integer(line: &[u8]) -> Result<i64, ParseError> {
    let bad = || ParseError::BadInteger(String::from_utf8_lossy(&line[..line.len().min(32)]).into_owned());
    let (neg, digits) = match line.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(bad());
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        v = v.checked_mul(10).and_then(|v| v.checked_add(i64::from(d - b'0'))).ok_or_else(bad)?;
    }
    Ok(if neg { -v } else { v })
}

/// Appends a command (an array of bulk strings) to `out`.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_int(out, args.len() as i64);
    for a in args {
        out.push(b'$');
        push_int(out, a.len() as i64);
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends any frame to `out` (the server's replies).
pub fn encode(out: &mut Vec<u8>, frame: &Frame) {
    match frame {
        Frame::Simple(s) => line_frame(out, b'+', s),
        Frame::Error(s) => line_frame(out, b'-', s),
        Frame::Integer(i) => {
            out.push(b':');
            push_int(out, *i);
        }
        Frame::Bulk(b) => {
            out.push(b'$');
            push_int(out, b.len() as i64);
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Frame::Null => out.extend_from_slice(b"$-1\r\n"),
        Frame::Array(items) => {
            out.push(b'*');
            push_int(out, items.len() as i64);
            for f in items {
                encode(out, f);
            }
        }
        Frame::NullArray => out.extend_from_slice(b"*-1\r\n"),
    }
}

fn line_frame(out: &mut Vec<u8>, marker: u8, s: &[u8]) {
    out.push(marker);
    // A CR or LF inside a simple string would end the line early and desynchronise the peer.
    out.extend(s.iter().map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }));
    out.extend_from_slice(b"\r\n");
}

fn push_int(out: &mut Vec<u8>, n: i64) {
    let _ = write!(out, "{n}\r\n");
}

/// A command's name and arguments.
pub type Args = Vec<Vec<u8>>;

/// Parses one command as a server receives it: a RESP array of bulk strings, or an inline command
/// (`PING\r\n`, as typed in telnet). An empty inline line yields an empty argument list.
pub fn parse_command(buf: &[u8]) -> Result<Option<(Args, usize)>, ParseError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => match parse(buf)? {
            None => Ok(None),
            Some((Frame::Array(items), used)) => {
                let args = items
                    .into_iter()
                    .map(|f| match f {
                        Frame::Bulk(b) => Ok(b),
                        _ => Err(ParseError::NotACommand),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some((args, used)))
            }
            Some((Frame::NullArray, used)) => Ok(Some((Vec::new(), used))),
            Some(_) => Err(ParseError::NotACommand),
        },
        Some(_) => {
            let window = &buf[..buf.len().min(MAX_LINE_LEN + 1)];
            match window.iter().position(|&c| c == b'\n') {
                None if buf.len() > MAX_LINE_LEN => Err(ParseError::LineTooLong),
                None => Ok(None),
                Some(i) => {
                    let line = &buf[..i];
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    let args =
                        line.split(|c| c.is_ascii_whitespace()).filter(|w| !w.is_empty()).map(<[u8]>::to_vec).collect();
                    Ok(Some((args, i + 1)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> Frame {
        let (f, used) = parse(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len(), "frame {f:?} should use all of {bytes:?}");
        f
    }

    #[test]
    fn parses_every_type() {
        assert_eq!(one(b"+OK\r\n"), Frame::simple("OK"));
        assert_eq!(one(b"-ERR nope\r\n"), Frame::error("ERR nope"));
        assert_eq!(one(b":-42\r\n"), Frame::Integer(-42));
        assert_eq!(one(b"$5\r\nhe\r\no\r\n"), Frame::Bulk(b"he\r\no".to_vec()));
        assert_eq!(one(b"$0\r\n\r\n"), Frame::Bulk(vec![]));
        assert_eq!(one(b"$-1\r\n"), Frame::Null);
        assert_eq!(one(b"*-1\r\n"), Frame::NullArray);
        assert_eq!(
            one(b"*2\r\n:1\r\n*1\r\n+x\r\n"),
            Frame::Array(vec![Frame::Integer(1), Frame::Array(vec![Frame::simple("x")])])
        );
    }

    #[test]
    fn every_prefix_of_a_frame_is_incomplete_not_an_error() {
        let full = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$-1\r\n";
        for n in 0..full.len() {
            assert_eq!(parse(&full[..n]), Ok(None), "prefix of {n} bytes");
        }
        assert!(parse(full).unwrap().is_some());
    }

    #[test]
    fn leaves_the_next_frame_in_the_buffer() {
        let (f, used) = parse(b"+A\r\n+B\r\n").unwrap().unwrap();
        assert_eq!((f, used), (Frame::simple("A"), 4));
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n"), Err(ParseError::BadType(b'H')));
        assert_eq!(parse(b"\x00"), Err(ParseError::BadType(0)));
        assert!(matches!(parse(b":12a\r\n"), Err(ParseError::BadInteger(_))));
        assert!(matches!(parse(b":\r\n"), Err(ParseError::BadInteger(_))));
        assert!(matches!(parse(b":99999999999999999999\r\n"), Err(ParseError::BadInteger(_))));
        assert_eq!(parse(b"$-2\r\n"), Err(ParseError::BadLength(-2)));
        assert_eq!(parse(b"$99999999999\r\n"), Err(ParseError::BadLength(99_999_999_999)));
        assert_eq!(parse(b"*99999999\r\n"), Err(ParseError::BadLength(99_999_999)));
        assert_eq!(parse(b"$3\r\nabcXY"), Err(ParseError::MissingCrlf));
        // Garbage inside an array is found too.
        assert_eq!(parse(b"*2\r\n+ok\r\n?\r\n"), Err(ParseError::BadType(b'?')));
    }

    #[test]
    fn an_endless_line_is_an_error_not_a_wait() {
        let mut long = b"+".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE_LEN + 10));
        assert_eq!(parse(&long), Err(ParseError::LineTooLong));
        long.truncate(MAX_LINE_LEN);
        assert_eq!(parse(&long), Ok(None));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deep), Err(ParseError::TooDeep));
        let mut ok = b"*1\r\n".repeat(MAX_DEPTH);
        ok.extend_from_slice(b":1\r\n");
        assert!(parse(&ok).unwrap().is_some());
    }

    #[test]
    fn encodes_commands_and_frames_that_parse_back() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SET", b"k", b"v\r\n"]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n");
        let frames = [
            Frame::simple("OK"),
            Frame::error("ERR x"),
            Frame::Integer(i64::MIN + 1),
            Frame::Bulk(b"\x00\xff".to_vec()),
            Frame::Null,
            Frame::NullArray,
            Frame::Array(vec![Frame::Bulk(b"a".to_vec()), Frame::Null]),
        ];
        for f in frames {
            let mut out = Vec::new();
            encode(&mut out, &f);
            assert_eq!(one(&out), f);
        }
        let mut out = Vec::new();
        encode(&mut out, &Frame::simple("a\r\nb"));
        assert_eq!(one(&out), Frame::simple("a  b"));
    }

    #[test]
    fn parses_commands_resp_and_inline() {
        let (args, used) = parse_command(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nrest").unwrap().unwrap();
        assert_eq!((args, used), (vec![b"GET".to_vec(), b"k".to_vec()], 20));
        let (args, used) = parse_command(b"set  a b\r\nPING\n").unwrap().unwrap();
        assert_eq!((args, used), (vec![b"set".to_vec(), b"a".to_vec(), b"b".to_vec()], 10));
        assert_eq!(parse_command(b"\r\n").unwrap().unwrap(), (vec![], 2));
        assert_eq!(parse_command(b"PIN").unwrap(), None);
        assert_eq!(parse_command(b"*1\r\n:1\r\n"), Err(ParseError::NotACommand));
    }
}
