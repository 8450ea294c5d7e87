//! Whole numbers as JSON may spell them: `8` or `8.0` (JSON Schema calls both
//! an integer, and so do clients that write every number as a float), never
//! `8.5`, never negative, never beyond what a signed 64-bit integer holds
//! (the document's `int64`). Used with `#[serde(deserialize_with = ...)]` on
//! the API's integer fields.

use serde::de::{Deserializer, Error, Visitor};

struct Whole;

impl Visitor<'_> for Whole {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a whole number from 0 to 9223372036854775807")
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
        if v > i64::MAX as u64 {
            return Err(E::custom(format!("{v} is larger than 9223372036854775807")));
        }
        Ok(v)
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative; a whole number from 0 is expected")))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<u64, E> {
        if v.is_finite() && v.fract() == 0.0 && (0.0..=i64::MAX as f64).contains(&v) {
            Ok(v as u64)
        } else {
            Err(E::custom(format!("{v} is not a whole number from 0 to 9223372036854775807")))
        }
    }
}

/// A whole number into any unsigned type it fits.
pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let v = d.deserialize_any(Whole)?;
    T::try_from(v).map_err(|_| D::Error::custom(format!("{v} is too large here")))
}

/// The same for an optional field (`null` or absent is `None`).
pub fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    struct Maybe<T>(std::marker::PhantomData<T>);
    impl<'de, T: TryFrom<u64>> Visitor<'de> for Maybe<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a whole number or null")
        }
        fn visit_none<E: Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_unit<E: Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
            deserialize(d).map(Some)
        }
    }
    d.deserialize_option(Maybe(std::marker::PhantomData))
}

/// The same for every item of a list.
pub fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    #[derive(serde::Deserialize)]
    struct Item(#[serde(deserialize_with = "deserialize")] u64);
    let items: Vec<Item> = serde::Deserialize::deserialize(d)?;
    items
        .into_iter()
        .map(|Item(v)| T::try_from(v).map_err(|_| D::Error::custom(format!("{v} is too large here"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct T {
        #[serde(deserialize_with = "super::deserialize")]
        n: usize,
        #[serde(default, deserialize_with = "super::option")]
        m: Option<u32>,
    }

    fn parse(s: &str) -> Result<T, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_in_any_spelling_and_nothing_else() {
        assert_eq!(parse(r#"{"n": 8}"#).unwrap(), T { n: 8, m: None });
        assert_eq!(parse(r#"{"n": 8.0, "m": 3.0}"#).unwrap(), T { n: 8, m: Some(3) });
        assert_eq!(parse(r#"{"n": 1, "m": null}"#).unwrap(), T { n: 1, m: None });
        assert!(parse(r#"{"n": 8.5}"#).unwrap_err().contains("not a whole number"));
        assert!(parse(r#"{"n": -1}"#).unwrap_err().contains("negative"));
        assert!(parse(r#"{"n": 9223372036854775808}"#).unwrap_err().contains("larger than"));
        assert!(parse(r#"{"n": 1, "m": 4294967296}"#).unwrap_err().contains("too large"));
        assert!(parse(r#"{"n": "8"}"#).is_err());
    }
}
