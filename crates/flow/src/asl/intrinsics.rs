//! ASL's intrinsic functions, as written in a payload template's `.$` values:
//! `States.Format('{} of {}', $.done, $.total)`. Arguments are string literals
//! (single quotes; `\\'`, `\\{`, `\\}` and `\\\\` escaped), numbers, `true`,
//! `false`, `null`, paths (`$.x`, `$$.Map.Item.Index`) and other intrinsics.
//! The language's grammar is small and no crate reads it, so it is read here.

use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sha2::Digest;

use super::paths::select;

/// Whether a template value is an intrinsic call.
pub fn is_call(text: &str) -> bool {
    text.starts_with("States.")
}

/// The intrinsics this engine evaluates.
pub const SUPPORTED: &[&str] = &[
    "States.Format",
    "States.StringToJson",
    "States.JsonToString",
    "States.Array",
    "States.ArrayPartition",
    "States.ArrayContains",
    "States.ArrayRange",
    "States.ArrayGetItem",
    "States.ArrayLength",
    "States.ArrayUnique",
    "States.MathAdd",
    "States.StringSplit",
    "States.UUID",
    "States.Base64Encode",
    "States.Base64Decode",
    "States.Hash",
    "States.MathRandom",
    "States.JsonMerge",
];

/// The most characters Base64Encode, Base64Decode and Hash take: AWS's limit,
/// kept so that a definition that runs here also runs there.
const MAX_DATA_CHARS: usize = 10_000;

/// The algorithms States.Hash takes, spelled as AWS spells them.
const HASH_ALGORITHMS: &str = "MD5, SHA-1, SHA-256, SHA-384, SHA-512";

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Literal(Value),
    Path(String),
    Call(String, Vec<Arg>),
}

/// Checks a call's syntax and that its function is supported.
pub fn check(text: &str) -> Result<(), String> {
    parse(text).map(drop)
}

/// Evaluates a call against a state's input and the context object.
pub fn evaluate(text: &str, input: &Value, context: &Value) -> Result<Value, String> {
    let call = parse(text)?;
    eval(&call, input, context)
}

fn parse(text: &str) -> Result<Arg, String> {
    let mut p = Parser { s: text.as_bytes(), at: 0, text };
    let arg = p.arg()?;
    p.space();
    if p.at != p.s.len() {
        return Err(p.error("unexpected text after the call"));
    }
    match arg {
        Arg::Call(..) => Ok(arg),
        _ => Err(format!("{text} is not an intrinsic call")),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("{}: {what} at character {}", self.text, self.at)
    }

    fn space(&mut self) {
        while self.at < self.s.len() && self.s[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn arg(&mut self) -> Result<Arg, String> {
        self.space();
        match self.peek() {
            Some(b'\'') => self.string(),
            Some(b'$') => Ok(Arg::Path(self.path())),
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            Some(_) if self.text[self.at..].starts_with("States.") => self.call(),
            Some(_) => {
                for (word, value) in [("true", json!(true)), ("false", json!(false)), ("null", Value::Null)] {
                    if self.text[self.at..].starts_with(word) {
                        self.at += word.len();
                        return Ok(Arg::Literal(value));
                    }
                }
                Err(self.error("expected a string, number, path or intrinsic"))
            }
            None => Err(self.error("expected an argument")),
        }
    }

    fn call(&mut self) -> Result<Arg, String> {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.') {
            self.at += 1;
        }
        let name = self.text[start..self.at].to_string();
        if !SUPPORTED.contains(&name.as_str()) {
            return Err(format!("{name} is not an intrinsic this engine runs (it runs {})", SUPPORTED.join(", ")));
        }
        self.space();
        if self.peek() != Some(b'(') {
            return Err(self.error("expected ("));
        }
        self.at += 1;
        let mut args = Vec::new();
        self.space();
        if self.peek() == Some(b')') {
            self.at += 1;
            return Ok(Arg::Call(name, args));
        }
        loop {
            args.push(self.arg()?);
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b')') => {
                    self.at += 1;
                    return Ok(Arg::Call(name, args));
                }
                _ => return Err(self.error("expected , or )")),
            }
        }
    }

    fn string(&mut self) -> Result<Arg, String> {
        self.at += 1;
        let mut out = String::new();
        let rest = &self.text[self.at..];
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => {
                        // Braces stay escaped for States.Format, which reads them.
                        if e == '{' || e == '}' {
                            out.push('\\');
                        }
                        out.push(e);
                    }
                    None => break,
                },
                '\'' => {
                    self.at += i + 1;
                    return Ok(Arg::Literal(Value::String(out)));
                }
                c => out.push(c),
            }
        }
        Err(self.error("a string is not closed"))
    }

    fn number(&mut self) -> Result<Arg, String> {
        let start = self.at;
        self.at += 1;
        while self.peek().is_some_and(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')) {
            self.at += 1;
        }
        let n: f64 = self.text[start..self.at].parse().map_err(|_| self.error("not a number"))?;
        Ok(Arg::Literal(if n.fract() == 0.0 && n.abs() < 9e15 { json!(n as i64) } else { json!(n) }))
    }

    /// A path runs to the next top-level `,` or `)` (brackets may hold them).
    fn path(&mut self) -> String {
        let start = self.at;
        let mut depth = 0;
        while let Some(c) = self.peek() {
            match c {
                b'[' | b'(' => depth += 1,
                b']' | b')' if depth > 0 => depth -= 1,
                b',' | b')' if depth == 0 => break,
                _ => {}
            }
            self.at += 1;
        }
        self.text[start..self.at].trim().to_string()
    }
}

fn eval(arg: &Arg, input: &Value, context: &Value) -> Result<Value, String> {
    let (name, args) = match arg {
        Arg::Literal(v) => return Ok(v.clone()),
        Arg::Path(p) => return select(p, input, context),
        Arg::Call(name, args) => (name.as_str(), args),
    };
    let values: Vec<Value> = args.iter().map(|a| eval(a, input, context)).collect::<Result<_, _>>()?;
    let want = |n: usize| -> Result<(), String> {
        if values.len() == n { Ok(()) } else { Err(format!("{name} takes {n} arguments, not {}", values.len())) }
    };
    let text = |v: &Value| -> String {
        match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    };
    let list = |v: &Value| -> Result<Vec<Value>, String> {
        v.as_array().cloned().ok_or_else(|| format!("{name}: {v} is not a list"))
    };
    let int =
        |v: &Value| -> Result<i64, String> { v.as_i64().ok_or_else(|| format!("{name}: {v} is not a whole number")) };
    Ok(match name {
        "States.Format" => {
            let Some((fmt, rest)) = values.split_first() else { return Err("States.Format needs a template".into()) };
            let fmt = fmt.as_str().ok_or("States.Format's template must be a string")?;
            let mut out = String::new();
            let mut next = rest.iter();
            let mut chars = fmt.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '{' if chars.peek() == Some(&'}') => {
                        chars.next();
                        let v = next.next().ok_or("States.Format has more {} than arguments")?;
                        out.push_str(&text(v));
                    }
                    c => out.push(c),
                }
            }
            if next.next().is_some() {
                return Err("States.Format has more arguments than {}".into());
            }
            json!(out)
        }
        "States.StringToJson" => {
            want(1)?;
            let s = values[0].as_str().ok_or("States.StringToJson takes a string")?;
            serde_json::from_str(s).map_err(|e| format!("States.StringToJson: {e}"))?
        }
        "States.JsonToString" => {
            want(1)?;
            json!(values[0].to_string())
        }
        // Shallow, as in AWS (which takes only `false`): the second's keys win.
        "States.JsonMerge" => {
            want(3)?;
            if values[2] != Value::Bool(false) {
                return Err("States.JsonMerge merges shallowly only: its third argument must be false".into());
            }
            let (Value::Object(mut merged), Value::Object(second)) = (values[0].clone(), values[1].clone()) else {
                return Err("States.JsonMerge merges two JSON objects".into());
            };
            merged.extend(second);
            Value::Object(merged)
        }
        "States.Array" => Value::Array(values),
        "States.ArrayPartition" => {
            want(2)?;
            let (items, size) = (list(&values[0])?, int(&values[1])?);
            if size <= 0 {
                return Err("States.ArrayPartition's chunk size must be positive".into());
            }
            Value::Array(items.chunks(size as usize).map(|c| Value::Array(c.to_vec())).collect())
        }
        "States.ArrayContains" => {
            want(2)?;
            json!(list(&values[0])?.contains(&values[1]))
        }
        "States.ArrayRange" => {
            want(3)?;
            let (start, end, step) = (int(&values[0])?, int(&values[1])?, int(&values[2])?);
            if step == 0 || (end - start) / step > 1000 {
                return Err("States.ArrayRange: a step of 0, or more than 1000 items".into());
            }
            let mut out = Vec::new();
            let mut at = start;
            while (step > 0 && at <= end) || (step < 0 && at >= end) {
                out.push(json!(at));
                at += step;
            }
            Value::Array(out)
        }
        "States.ArrayGetItem" => {
            want(2)?;
            let (items, i) = (list(&values[0])?, int(&values[1])?);
            items.get(i as usize).cloned().ok_or_else(|| format!("States.ArrayGetItem: no item {i}"))?
        }
        "States.ArrayLength" => {
            want(1)?;
            json!(list(&values[0])?.len())
        }
        "States.ArrayUnique" => {
            want(1)?;
            let mut out: Vec<Value> = Vec::new();
            for v in list(&values[0])? {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Value::Array(out)
        }
        "States.MathAdd" => {
            want(2)?;
            json!(int(&values[0])? + int(&values[1])?)
        }
        "States.StringSplit" => {
            want(2)?;
            let (s, delimiters) = (text(&values[0]), text(&values[1]));
            Value::Array(s.split(|c| delimiters.contains(c)).filter(|p| !p.is_empty()).map(|p| json!(p)).collect())
        }
        "States.UUID" => {
            want(0)?;
            let (a, b) = (rand::random::<u64>(), rand::random::<u64>());
            json!(format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                0x8000 | (b >> 48) & 0x3fff,
                b & 0xffff_ffff_ffff
            ))
        }
        "States.Base64Encode" => {
            want(1)?;
            json!(STANDARD.encode(data(name, &values[0])?))
        }
        "States.Base64Decode" => {
            want(1)?;
            let bytes = STANDARD.decode(data(name, &values[0])?).map_err(|e| format!("{name}: {e}"))?;
            // The result is a JSON string, so the bytes must be text; AWS decodes to text too.
            let decoded =
                String::from_utf8(bytes).map_err(|_| format!("{name}: the decoded data is not UTF-8 text"))?;
            json!(decoded)
        }
        "States.Hash" => {
            want(2)?;
            let bytes = data(name, &values[0])?.as_bytes();
            let algorithm =
                values[1].as_str().ok_or_else(|| format!("{name}: the algorithm {} is not a string", values[1]))?;
            let digest = match algorithm {
                "MD5" => md5::Md5::digest(bytes).to_vec(),
                "SHA-1" => sha1::Sha1::digest(bytes).to_vec(),
                "SHA-256" => sha2::Sha256::digest(bytes).to_vec(),
                "SHA-384" => sha2::Sha384::digest(bytes).to_vec(),
                "SHA-512" => sha2::Sha512::digest(bytes).to_vec(),
                other => {
                    return Err(format!("{name}: {other} is not an algorithm it takes (it takes {HASH_ALGORITHMS})"));
                }
            };
            let mut hex = String::with_capacity(digest.len() * 2);
            for b in digest {
                // Writing to a String cannot fail.
                let _ = write!(hex, "{b:02x}");
            }
            json!(hex)
        }
        "States.MathRandom" => {
            if !(2..=3).contains(&values.len()) {
                return Err(format!("{name} takes 2 or 3 arguments, not {}", values.len()));
            }
            let (start, end) = (int(&values[0])?, int(&values[1])?);
            // AWS includes the start and excludes the end; an empty range has no number to give.
            if start >= end {
                return Err(format!("{name}: the start {start} must be below the end {end} (which is excluded)"));
            }
            match values.get(2) {
                // The same seed gives the same number, as AWS promises. StdRng's
                // sequence is fixed for a given `rand` release, not across them.
                Some(seed) => json!(StdRng::seed_from_u64(int(seed)? as u64).random_range(start..end)),
                None => json!(rand::rng().random_range(start..end)),
            }
        }
        other => return Err(format!("{other} is not an intrinsic this engine runs")),
    })
}

/// The data string Base64Encode, Base64Decode and Hash take, within AWS's limit.
fn data<'a>(name: &str, v: &'a Value) -> Result<&'a str, String> {
    let s = v.as_str().ok_or_else(|| format!("{name}: {v} is not a string"))?;
    if s.chars().count() > MAX_DATA_CHARS {
        return Err(format!("{name}: the data is longer than {MAX_DATA_CHARS} characters"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intrinsics_are_read_and_run() {
        let input = json!({"done": 3, "total": 4, "items": [1, 2, 2, 3], "text": "{\"a\": 1}", "csv": "a,b,,c"});
        let ctx = json!({"Map": {"Item": {"Index": 2}}});
        let e = |s: &str| evaluate(s, &input, &ctx).unwrap();
        assert_eq!(e("States.Format('{} of {}', $.done, $.total)"), json!("3 of 4"));
        assert_eq!(e(r"States.Format('item {} \{x\}', $$.Map.Item.Index)"), json!("item 2 {x}"));
        assert_eq!(e("States.Format('it\\'s {}', 'fine')"), json!("it's fine"));
        assert_eq!(e("States.StringToJson($.text)"), json!({"a": 1}));
        assert_eq!(e("States.JsonToString($.items)"), json!("[1,2,2,3]"));
        assert_eq!(e("States.Array(1, 'two', $.done, null)"), json!([1, "two", 3, null]));
        assert_eq!(e("States.ArrayPartition($.items, 3)"), json!([[1, 2, 2], [3]]));
        assert_eq!(e("States.ArrayContains($.items, 3)"), json!(true));
        assert_eq!(e("States.ArrayRange(1, 9, 4)"), json!([1, 5, 9]));
        assert_eq!(e("States.ArrayGetItem($.items, 3)"), json!(3));
        assert_eq!(e("States.ArrayLength(States.ArrayUnique($.items))"), json!(3));
        assert_eq!(e("States.MathAdd($.done, -1)"), json!(2));
        assert_eq!(e("States.StringSplit($.csv, ',')"), json!(["a", "b", "c"]));
        assert_eq!(e("States.UUID()").as_str().unwrap().len(), 36);
        assert!(check("States.JsonPatch($.a, $.b)").unwrap_err().contains("not an intrinsic this engine runs"));
        let merged = evaluate(
            "States.JsonMerge($.a, $.b, false)",
            &json!({"a": {"x": 1, "y": {"p": 1}}, "b": {"y": {"q": 2}, "z": 3}}),
            &json!({}),
        );
        assert_eq!(merged.unwrap(), json!({"x": 1, "y": {"q": 2}, "z": 3}), "shallow: b's y replaces a's");
        assert!(
            evaluate("States.JsonMerge($.a, $.a, true)", &json!({"a": {}}), &json!({}))
                .unwrap_err()
                .contains("must be false")
        );
        assert!(
            evaluate("States.JsonMerge($.a, 1, false)", &json!({"a": {}}), &json!({}))
                .unwrap_err()
                .contains("two JSON objects")
        );
        assert!(check("States.Format('x', $.a").unwrap_err().contains("expected , or )"));
        assert!(evaluate("States.MathAdd(1)", &input, &ctx).unwrap_err().contains("takes 2 arguments"));
    }

    #[test]
    fn base64_and_hash_follow_aws() {
        let input = json!({"input": "Data to encode", "base64": "RGF0YSB0byBlbmNvZGU=", "data": "input data", "n": 7});
        let ctx = json!({});
        let e = |s: &str| evaluate(s, &input, &ctx);
        // AWS's own example, and a round trip through text that is not ASCII.
        assert_eq!(e("States.Base64Encode($.input)").unwrap(), json!("RGF0YSB0byBlbmNvZGU="));
        assert_eq!(e("States.Base64Decode($.base64)").unwrap(), json!("Data to encode"));
        assert_eq!(e("States.Base64Encode('héllo ✓')").unwrap(), json!("aMOpbGxvIOKckw=="));
        assert_eq!(e("States.Base64Decode(States.Base64Encode('héllo ✓'))").unwrap(), json!("héllo ✓"));
        assert_eq!(e("States.Base64Encode('')").unwrap(), json!(""));
        // Vectors from coreutils' md5sum, sha1sum, sha256sum, sha384sum, sha512sum.
        for (algorithm, hex) in [
            ("MD5", "812f45842bc6d66ee14572ce20db8e86"),
            ("SHA-1", "aaff4a450a104cd177d28d18d74485e8cae074b7"),
            ("SHA-256", "b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3"),
            (
                "SHA-384",
                "d28a7d5cf25a74f11a50a18452b75e04bb3d70c9dd0510d6123aa008c756511b87525bdc835ebb27e1fb9e9374a15562",
            ),
            (
                "SHA-512",
                "6ce4adb348546d4f449c4d25aad9a7c9cb711d9e91982d3f0b29ca2f3f47d4ce\
                 2deba23bf2954f0f1d593fc50283731a533d30d425402d4f91316d871303aac4",
            ),
        ] {
            assert_eq!(e(&format!("States.Hash($.data, '{algorithm}')")).unwrap(), json!(hex), "{algorithm}");
        }
        assert_eq!(
            e("States.Hash('', 'SHA-256')").unwrap(),
            json!("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );

        let err = |s: &str| e(s).unwrap_err();
        assert!(err("States.Base64Encode()").contains("takes 1 arguments, not 0"));
        assert!(err("States.Base64Decode('a', 'b')").contains("takes 1 arguments, not 2"));
        assert!(err("States.Base64Encode($.n)").contains("7 is not a string"));
        assert!(err("States.Base64Decode('not base64!')").contains("States.Base64Decode: "));
        // Unpadded input is not standard base64.
        assert!(err("States.Base64Decode('RGF0YQ')").contains("States.Base64Decode: "));
        // 0xff 0xfe is not UTF-8.
        assert!(err("States.Base64Decode('//4=')").contains("not UTF-8"));
        assert!(err("States.Hash($.data)").contains("takes 2 arguments, not 1"));
        assert!(err("States.Hash($.n, 'MD5')").contains("7 is not a string"));
        assert!(err("States.Hash($.data, 7)").contains("algorithm 7 is not a string"));
        let unknown = err("States.Hash($.data, 'sha256')");
        assert!(unknown.contains("sha256 is not an algorithm") && unknown.contains(HASH_ALGORITHMS), "{unknown}");

        // The limit counts characters, not bytes: 10,000 two-byte characters pass.
        let at_limit = json!({"s": "é".repeat(MAX_DATA_CHARS), "t": "x".repeat(MAX_DATA_CHARS + 1)});
        assert!(evaluate("States.Base64Encode($.s)", &at_limit, &ctx).is_ok());
        assert!(evaluate("States.Hash($.s, 'MD5')", &at_limit, &ctx).is_ok());
        for call in ["States.Base64Encode($.t)", "States.Base64Decode($.t)", "States.Hash($.t, 'MD5')"] {
            assert!(evaluate(call, &at_limit, &ctx).unwrap_err().contains("longer than 10000 characters"), "{call}");
        }
    }

    #[test]
    fn math_random_is_in_range_and_repeatable_with_a_seed() {
        let input = json!({"start": 1, "end": 999, "seed": 42});
        let ctx = json!({});
        let e = |s: &str| evaluate(s, &input, &ctx);
        let seeded = e("States.MathRandom($.start, $.end, $.seed)").unwrap();
        for _ in 0..20 {
            assert_eq!(e("States.MathRandom($.start, $.end, $.seed)").unwrap(), seeded);
        }
        assert!((1..999).contains(&seeded.as_i64().unwrap()), "{seeded}");
        // The end is excluded: a range of one number always gives it, seeded or not.
        assert_eq!(e("States.MathRandom(5, 6)").unwrap(), json!(5));
        assert_eq!(e("States.MathRandom(-3, -2, -7)").unwrap(), json!(-3));
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let n = e(&format!("States.MathRandom(-2, 3, {seed})")).unwrap().as_i64().unwrap();
            assert!((-2..3).contains(&n), "{n}");
            seen.insert(n);
        }
        assert_eq!(seen.len(), 5, "200 seeds reach every number in [-2, 3): {seen:?}");
        for _ in 0..50 {
            let n = e("States.MathRandom(10, 20)").unwrap().as_i64().unwrap();
            assert!((10..20).contains(&n), "{n}");
        }

        let err = |s: &str| e(s).unwrap_err();
        assert!(err("States.MathRandom(1)").contains("takes 2 or 3 arguments, not 1"));
        assert!(err("States.MathRandom(1, 2, 3, 4)").contains("takes 2 or 3 arguments, not 4"));
        assert!(err("States.MathRandom(5, 5)").contains("must be below the end"));
        assert!(err("States.MathRandom(9, 1, 3)").contains("must be below the end"));
        assert!(err("States.MathRandom(1.5, 9)").contains("1.5 is not a whole number"));
        assert!(err("States.MathRandom(1, '9')").contains("\"9\" is not a whole number"));
        assert!(err("States.MathRandom(1, 9, 'seed')").contains("is not a whole number"));
    }
}
