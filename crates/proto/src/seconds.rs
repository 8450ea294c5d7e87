//! Durations in configuration as seconds (`2.5`), the way people write them.
//! Use with `#[serde(with = "volley_proto::seconds")]`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::Error};

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    Duration::try_from_secs_f64(secs).map_err(|_| D::Error::custom(format!("{secs} is not a number of seconds from 0")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "super")]
        d: Duration,
    }

    #[test]
    fn seconds_round_trip_and_nonsense_is_refused() {
        let t: T = serde_json::from_str(r#"{"d": 2.5}"#).unwrap();
        assert_eq!(t.d, Duration::from_millis(2500));
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"d":2.5}"#);
        assert!(serde_json::from_str::<T>(r#"{"d": -1}"#).is_err());
    }
}
