//! Element-wise reductions over numeric slices carried as little-endian bytes.

use bytes::Bytes;

use crate::error::{Error, Result};

/// A combining function over two encoded values. It must be associative; the
/// middleware always combines in rank order, so results are reproducible.
pub type Combine<'a> = &'a (dyn Fn(&[u8], &[u8]) -> Result<Vec<u8>> + Send + Sync);

/// Built-in element-wise operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Element-wise sum (wrapping for integers).
    Sum,
    /// Element-wise minimum.
    Min,
    /// Element-wise maximum.
    Max,
}

/// Numbers the built-in reductions work on.
pub trait Element: Copy + Send + Sync + 'static {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// Decodes one element from exactly `SIZE` little-endian bytes.
    fn read(bytes: &[u8]) -> Self;
    /// Appends the little-endian encoding.
    fn write(self, out: &mut Vec<u8>);
    /// Combines two elements.
    fn apply(op: Op, a: Self, b: Self) -> Self;
}

macro_rules! element {
    ($t:ty, $sum:expr) => {
        impl Element for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn read(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("caller passes SIZE bytes"))
            }
            fn write(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn apply(op: Op, a: Self, b: Self) -> Self {
                match op {
                    Op::Sum => $sum(a, b),
                    Op::Min => {
                        if b < a {
                            b
                        } else {
                            a
                        }
                    }
                    Op::Max => {
                        if b > a {
                            b
                        } else {
                            a
                        }
                    }
                }
            }
        }
    };
}

element!(f64, |a: f64, b: f64| a + b);
element!(f32, |a: f32, b: f32| a + b);
element!(i64, i64::wrapping_add);
element!(u64, u64::wrapping_add);

/// Encodes a slice as the bytes the reductions work on.
pub fn encode<T: Element>(values: &[T]) -> Bytes {
    let mut out = Vec::with_capacity(values.len() * T::SIZE);
    for v in values {
        v.write(&mut out);
    }
    Bytes::from(out)
}

/// Decodes bytes made by [`encode`].
pub fn decode<T: Element>(bytes: &[u8]) -> Result<Vec<T>> {
    if !bytes.len().is_multiple_of(T::SIZE) {
        return Err(Error::invalid(format!(
            "{} bytes do not hold a whole number of {}-byte elements",
            bytes.len(),
            T::SIZE
        )));
    }
    Ok(bytes.chunks_exact(T::SIZE).map(T::read).collect())
}

/// The combining function of a built-in operation on `T`.
pub(crate) fn builtin<T: Element>(op: Op) -> impl Fn(&[u8], &[u8]) -> Result<Vec<u8>> + Send + Sync {
    move |a: &[u8], b: &[u8]| {
        if a.len() != b.len() {
            return Err(Error::invalid(format!(
                "reduction inputs differ in length ({} and {} bytes); every rank must pass the same number of elements",
                a.len(),
                b.len()
            )));
        }
        if !a.len().is_multiple_of(T::SIZE) {
            return Err(Error::invalid("reduction input is not a whole number of elements"));
        }
        let mut out = Vec::with_capacity(a.len());
        for (x, y) in a.chunks_exact(T::SIZE).zip(b.chunks_exact(T::SIZE)) {
            T::apply(op, T::read(x), T::read(y)).write(&mut out);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_combine_element_wise() {
        let sum = builtin::<f64>(Op::Sum);
        let out = sum(&encode(&[1.0, 2.5]), &encode(&[0.5, -1.0])).unwrap();
        assert_eq!(decode::<f64>(&out).unwrap(), vec![1.5, 1.5]);
        let min = builtin::<i64>(Op::Min);
        assert_eq!(decode::<i64>(&min(&encode(&[3i64, -9]), &encode(&[-4i64, 2])).unwrap()).unwrap(), vec![-4, -9]);
        let max = builtin::<u64>(Op::Max);
        assert_eq!(decode::<u64>(&max(&encode(&[u64::MAX]), &encode(&[1u64])).unwrap()).unwrap(), vec![u64::MAX]);
        let fsum = builtin::<f32>(Op::Sum);
        assert_eq!(decode::<f32>(&fsum(&encode(&[1f32]), &encode(&[2f32])).unwrap()).unwrap(), vec![3.0]);
    }

    #[test]
    fn mismatched_lengths_are_an_error() {
        let sum = builtin::<u64>(Op::Sum);
        assert!(sum(&encode(&[1u64]), &encode(&[1u64, 2])).is_err());
        assert!(decode::<f64>(&[0u8; 7]).is_err());
    }
}
