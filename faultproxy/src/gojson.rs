//! Request bodies decoded the way Toxiproxy's Go `encoding/json` decodes them, so that a bad body gets the
//! same 400 message: syntax errors in the words of Go's scanner, type errors naming the Go struct field,
//! keys matched exactly or else case-insensitively, the last duplicate winning, the first type error in
//! document order reported, and bytes after the first value ignored (Go's `Decoder.Decode`).

/// A JSON value with object members in document order and numbers as written (Go quotes the literal).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum JVal {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<JVal>),
    Obj(Vec<(String, JVal)>),
}

impl JVal {
    /// The word Go's `UnmarshalTypeError` uses for this value.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            JVal::Null => "null",
            JVal::Bool(_) => "bool",
            JVal::Num(_) => "number",
            JVal::Str(_) => "string",
            JVal::Arr(_) => "array",
            JVal::Obj(_) => "object",
        }
    }
}

/// Decodes the first JSON value of `body`. The error is Go's text, e.g. `EOF`, `unexpected EOF` or
/// `invalid character 'x' looking for beginning of value`.
pub(crate) fn decode(body: &[u8]) -> Result<JVal, String> {
    let mut p = Parser { b: body, i: 0, depth: 0 };
    p.skip_ws();
    if p.i >= p.b.len() {
        return Err("EOF".into());
    }
    p.value()
}

const UNEXPECTED_EOF: &str = "unexpected EOF";

/// Arrays and objects nested deeper are a syntax error, in the words of Go's (whose limit is 10 000):
/// the parser recurses, and 10 000 levels overflow a task's 2 MiB stack (the process aborts).
const MAX_DEPTH: usize = 1_000;

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    /// Arrays and objects open around the current position.
    depth: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Result<u8, String> {
        self.b.get(self.i).copied().ok_or_else(|| UNEXPECTED_EOF.to_string())
    }

    fn next(&mut self) -> Result<u8, String> {
        let c = self.peek()?;
        self.i += 1;
        Ok(c)
    }

    fn value(&mut self) -> Result<JVal, String> {
        self.skip_ws();
        match self.peek()? {
            c @ (b'{' | b'[') => self.nested(c),
            b'"' => {
                self.i += 1;
                self.string().map(JVal::Str)
            }
            b't' => self.literal("true", JVal::Bool(true)),
            b'f' => self.literal("false", JVal::Bool(false)),
            b'n' => self.literal("null", JVal::Null),
            b'-' | b'0'..=b'9' => self.number(),
            c => Err(invalid(c, "looking for beginning of value")),
        }
    }

    /// An array or object, at most [`MAX_DEPTH`] deep.
    fn nested(&mut self, open: u8) -> Result<JVal, String> {
        if self.depth == MAX_DEPTH {
            return Err(invalid(open, "exceeded max depth"));
        }
        self.depth += 1;
        let v = if open == b'{' { self.object() } else { self.array() };
        self.depth -= 1;
        v
    }

    fn object(&mut self) -> Result<JVal, String> {
        self.i += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(JVal::Obj(members));
        }
        loop {
            self.skip_ws();
            match self.next()? {
                b'"' => {}
                c => return Err(invalid(c, "looking for beginning of object key string")),
            }
            let key = self.string()?;
            self.skip_ws();
            match self.next()? {
                b':' => {}
                c => return Err(invalid(c, "after object key")),
            }
            let v = self.value()?;
            members.push((key, v));
            self.skip_ws();
            match self.next()? {
                b',' => {}
                b'}' => return Ok(JVal::Obj(members)),
                c => return Err(invalid(c, "after object key:value pair")),
            }
        }
    }

    fn array(&mut self) -> Result<JVal, String> {
        self.i += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Ok(JVal::Arr(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            match self.next()? {
                b',' => {}
                b']' => return Ok(JVal::Arr(items)),
                c => return Err(invalid(c, "after array element")),
            }
        }
    }

    /// After the opening quote.
    fn string(&mut self) -> Result<String, String> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            match self.next()? {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => match self.next()? {
                    b'"' => out.push(b'"'),
                    b'\\' => out.push(b'\\'),
                    b'/' => out.push(b'/'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'u' => {
                        let mut cp = self.hex4()?;
                        if (0xD800..0xDC00).contains(&cp) && self.b[self.i..].starts_with(b"\\u") {
                            let save = self.i;
                            self.i += 2;
                            let lo = self.hex4()?;
                            if (0xDC00..0xE000).contains(&lo) {
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                            } else {
                                self.i = save;
                            }
                        }
                        let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                        out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                    c => return Err(invalid(c, "in string escape code")),
                },
                c if c < 0x20 => return Err(invalid(c, "in string literal")),
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut v = 0;
        for _ in 0..4 {
            let c = self.next()?;
            let d = (c as char).to_digit(16).ok_or_else(|| invalid(c, "in \\u hexadecimal character escape"))?;
            v = v * 16 + d;
        }
        Ok(v)
    }

    fn literal(&mut self, word: &'static str, v: JVal) -> Result<JVal, String> {
        self.i += 1;
        for expected in word.bytes().skip(1) {
            let c = self.next()?;
            if c != expected {
                return Err(invalid(c, &format!("in literal {word} (expecting {})", quote_char(expected))));
            }
        }
        Ok(v)
    }

    /// Go's number grammar; a number may end at the end of the input (a top-level value).
    fn number(&mut self) -> Result<JVal, String> {
        let start = self.i;
        let at = |p: &Self| p.b.get(p.i).copied();
        if at(self) == Some(b'-') {
            self.i += 1;
            match at(self) {
                Some(b'0'..=b'9') => {}
                Some(c) => return Err(invalid(c, "in numeric literal")),
                None => return Err(UNEXPECTED_EOF.into()),
            }
        }
        if at(self) == Some(b'0') {
            self.i += 1;
        } else {
            while matches!(at(self), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if at(self) == Some(b'.') {
            self.i += 1;
            match at(self) {
                Some(b'0'..=b'9') => {}
                Some(c) => return Err(invalid(c, "after decimal point in numeric literal")),
                None => return Err(UNEXPECTED_EOF.into()),
            }
            while matches!(at(self), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if matches!(at(self), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(at(self), Some(b'+' | b'-')) {
                self.i += 1;
            }
            match at(self) {
                Some(b'0'..=b'9') => {}
                Some(c) => return Err(invalid(c, "in exponent of numeric literal")),
                None => return Err(UNEXPECTED_EOF.into()),
            }
            while matches!(at(self), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        Ok(JVal::Num(String::from_utf8_lossy(&self.b[start..self.i]).into_owned()))
    }
}

fn invalid(c: u8, context: &str) -> String {
    format!("invalid character {} {context}", quote_char(c))
}

/// Go's `quoteChar`: the byte as a rune in single quotes, escaped like `strconv.Quote`.
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => r"'\''".to_string(),
        b'"' => "'\"'".to_string(),
        7 => r"'\a'".into(),
        8 => r"'\b'".into(),
        12 => r"'\f'".into(),
        b'\n' => r"'\n'".into(),
        b'\r' => r"'\r'".into(),
        b'\t' => r"'\t'".into(),
        11 => r"'\v'".into(),
        b'\\' => r"'\\'".into(),
        c if c < 0x20 || c == 0x7f => format!(r"'\x{c:02x}'"),
        c if (0x80..0xa0).contains(&c) => format!(r"'\u{c:04x}'"),
        c => format!("'{}'", c as char),
    }
}

/// The members of an object that belong to a Go struct with `fields`, in document order, each named by
/// the field it sets. Go matches a key exactly first, then case-insensitively; unknown keys are skipped.
pub(crate) fn members<'v>(obj: &'v [(String, JVal)], fields: &[&'static str]) -> Vec<(&'static str, &'v JVal)> {
    obj.iter()
        .filter_map(|(k, v)| {
            let f = fields.iter().find(|f| **f == k).or_else(|| fields.iter().find(|f| f.eq_ignore_ascii_case(k)));
            f.map(|f| (*f, v))
        })
        .collect()
}

/// `json: cannot unmarshal <kind> into Go struct field <field> of type <go_type>`.
pub(crate) fn field_error(kind: &str, field: &str, go_type: &str) -> String {
    format!("json: cannot unmarshal {kind} into Go struct field {field} of type {go_type}")
}

/// `json: cannot unmarshal <kind> into Go value of type <go_type>`.
pub(crate) fn value_error(kind: &str, go_type: &str) -> String {
    format!("json: cannot unmarshal {kind} into Go value of type {go_type}")
}

/// A Go `string` field; null leaves it unset.
pub(crate) fn string(v: &JVal, field: &str) -> Result<Option<String>, String> {
    match v {
        JVal::Null => Ok(None),
        JVal::Str(s) => Ok(Some(s.clone())),
        other => Err(field_error(other.kind(), field, "string")),
    }
}

/// A Go `bool` field; null leaves it unset.
pub(crate) fn boolean(v: &JVal, field: &str) -> Result<Option<bool>, String> {
    match v {
        JVal::Null => Ok(None),
        JVal::Bool(b) => Ok(Some(*b)),
        other => Err(field_error(other.kind(), field, "bool")),
    }
}

/// A Go `int64` (or 64-bit `int`) field: only integer literals in range.
pub(crate) fn integer(v: &JVal, field: &str, go_type: &str) -> Result<Option<i64>, String> {
    match v {
        JVal::Null => Ok(None),
        JVal::Num(raw) => {
            raw.parse::<i64>().map(Some).map_err(|_| field_error(&format!("number {raw}"), field, go_type))
        }
        other => Err(field_error(other.kind(), field, go_type)),
    }
}

/// A Go `float32` field: rounded to float32, out of range is an error.
pub(crate) fn float32(v: &JVal, field: &str) -> Result<Option<f32>, String> {
    match v {
        JVal::Null => Ok(None),
        JVal::Num(raw) => match raw.parse::<f32>() {
            Ok(f) if f.is_finite() => Ok(Some(f)),
            _ => Err(field_error(&format!("number {raw}"), field, "float32")),
        },
        other => Err(field_error(other.kind(), field, "float32")),
    }
}

/// A float32 as Go's `encoding/json` writes it: shortest digits, exponent form below 1e-6 and from 1e21.
pub(crate) fn format_float32(f: f32) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust: "1e-7", "1.5e21"; Go: "1e-07" cleaned to "1e-7", "1.5e+21".
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        decode(s.as_bytes()).unwrap_err()
    }

    #[test]
    fn syntax_errors_read_like_go() {
        assert_eq!(err(""), "EOF");
        assert_eq!(err("  \n"), "EOF");
        assert_eq!(err("nul"), "unexpected EOF");
        assert_eq!(err(r#"{"name":"c","#), "unexpected EOF");
        assert_eq!(err("x"), "invalid character 'x' looking for beginning of value");
        assert_eq!(err(r#"{"a" 1}"#), "invalid character '1' after object key");
        assert_eq!(err(r#"{"a":1,}"#), "invalid character '}' looking for beginning of object key string");
        assert_eq!(err(r#"{"a":1 "b"}"#), "invalid character '\"' after object key:value pair");
        assert_eq!(err(r#"{"a":[1 2]}"#), "invalid character '2' after array element");
        assert_eq!(err(r#"{"a":"\q"}"#), "invalid character 'q' in string escape code");
        assert_eq!(err("[1.]"), "invalid character ']' after decimal point in numeric literal");
        assert_eq!(err("[1e]"), "invalid character ']' in exponent of numeric literal");
        assert_eq!(err("[-x]"), "invalid character 'x' in numeric literal");
        assert_eq!(err("tx"), "invalid character 'x' in literal true (expecting 'r')");
        assert_eq!(err("{\"a\":\"\n\"}"), r"invalid character '\n' in string literal");
        assert_eq!(err("[1,]"), "invalid character ']' looking for beginning of value");
    }

    #[test]
    fn values_keep_order_raw_numbers_and_ignore_trailing_bytes() {
        let v = decode(br#"{"b":1.50,"a":[true,null,"x\u00e9\ud83d\ude00"]} trailing"#).unwrap();
        assert_eq!(
            v,
            JVal::Obj(vec![
                ("b".into(), JVal::Num("1.50".into())),
                ("a".into(), JVal::Arr(vec![JVal::Bool(true), JVal::Null, JVal::Str("xé😀".into())])),
            ])
        );
        assert_eq!(decode(b"5").unwrap(), JVal::Num("5".into()));
        assert_eq!(decode(b"-0").unwrap(), JVal::Num("-0".into()));
    }

    #[test]
    fn keys_match_exactly_then_case_insensitively() {
        let JVal::Obj(obj) = decode(br#"{"Name":"a","NAME":"b","other":1,"name":"c"}"#).unwrap() else { panic!() };
        let m = members(&obj, &["name", "listen"]);
        assert_eq!(m.len(), 3);
        assert!(m.iter().all(|(f, _)| *f == "name"));
        assert_eq!(m.last().unwrap().1, &JVal::Str("c".into()));
    }

    #[test]
    fn typed_fields_report_go_type_errors() {
        let n = |s: &str| JVal::Num(s.into());
        assert_eq!(integer(&n("-5"), "X.a", "int64"), Ok(Some(-5)));
        assert_eq!(integer(&n("-0"), "X.a", "int64"), Ok(Some(0)));
        assert_eq!(
            integer(&n("1.5"), "SlicerToxic.attributes.average_size", "int").unwrap_err(),
            "json: cannot unmarshal number 1.5 into Go struct field SlicerToxic.attributes.average_size of type int"
        );
        assert!(integer(&n("99999999999999999999"), "a", "int64").unwrap_err().contains("number 99999999999999999999"));
        assert_eq!(
            string(&n("5"), "Proxy.name").unwrap_err(),
            "json: cannot unmarshal number into Go struct field Proxy.name of type string"
        );
        assert_eq!(boolean(&JVal::Null, "Proxy.enabled"), Ok(None));
        assert!(float32(&n("1e400"), "ToxicWrapper.toxicity").unwrap_err().contains("number 1e400"));
        assert_eq!(float32(&n("0.5"), "t"), Ok(Some(0.5)));
    }

    #[test]
    fn float32_is_written_like_go() {
        assert_eq!(format_float32(1.0), "1");
        assert_eq!(format_float32(0.0), "0");
        assert_eq!(format_float32(0.5), "0.5");
        assert_eq!(format_float32("0.3333333333333".parse().unwrap()), "0.33333334");
        assert_eq!(format_float32(1e-7), "1e-7");
        assert_eq!(format_float32(0.000001), "0.000001");
        assert_eq!(format_float32(123456789012.0), "123456790000");
        assert_eq!(format_float32(-0.5), "-0.5");
        assert_eq!(format_float32(2e21), "2e+21");
    }
}
