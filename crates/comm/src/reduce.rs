//! Element-wise reductions over numeric slices carried as little-endian bytes.

use bytes::Bytes;

use crate::error::{Error, Result};

/// A combining function: folds an encoded value into an accumulator, in place.
/// It must be associative; the middleware always combines in rank order, so
/// results are reproducible.
pub type Combine<'a> = &'a (dyn Fn(&mut Vec<u8>, &[u8]) -> Result<()> + Send + Sync);

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
    /// Writes the little-endian encoding into exactly `SIZE` bytes.
    fn put(self, out: &mut [u8]);
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
            fn put(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
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

/// The combining function of a built-in operation on `T`: element-wise, in place.
pub(crate) fn builtin<T: Element>(op: Op) -> impl Fn(&mut Vec<u8>, &[u8]) -> Result<()> + Send + Sync {
    move |acc: &mut Vec<u8>, b: &[u8]| {
        if acc.len() != b.len() {
            return Err(Error::invalid(format!(
                "reduction inputs differ in length ({} and {} bytes); every rank must pass the same number of elements",
                acc.len(),
                b.len()
            )));
        }
        if !acc.len().is_multiple_of(T::SIZE) {
            return Err(Error::invalid("reduction input is not a whole number of elements"));
        }
        for (x, y) in acc.chunks_exact_mut(T::SIZE).zip(b.chunks_exact(T::SIZE)) {
            T::apply(op, T::read(x), T::read(y)).put(x);
        }
        Ok(())
    }
}

/// A user's function over two encoded values, as a [`Combine`].
pub(crate) fn user<F>(f: F) -> impl Fn(&mut Vec<u8>, &[u8]) -> Result<()> + Send + Sync
where
    F: Fn(&[u8], &[u8]) -> Vec<u8> + Send + Sync,
{
    move |acc: &mut Vec<u8>, b: &[u8]| {
        *acc = f(acc, b);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_combine_element_wise() {
        fn run<T: Element>(op: Op, a: &[T], b: &[T]) -> Vec<T> {
            let mut acc = encode(a).to_vec();
            builtin::<T>(op)(&mut acc, &encode(b)).unwrap();
            decode(&acc).unwrap()
        }
        assert_eq!(run(Op::Sum, &[1.0f64, 2.5], &[0.5, -1.0]), vec![1.5, 1.5]);
        assert_eq!(run(Op::Min, &[3i64, -9], &[-4, 2]), vec![-4, -9]);
        assert_eq!(run(Op::Max, &[u64::MAX], &[1]), vec![u64::MAX]);
        assert_eq!(run(Op::Sum, &[1f32], &[2f32]), vec![3.0]);
    }

    #[test]
    fn mismatched_lengths_are_an_error() {
        let sum = builtin::<u64>(Op::Sum);
        assert!(sum(&mut encode(&[1u64]).to_vec(), &encode(&[1u64, 2])).is_err());
        assert!(decode::<f64>(&[0u8; 7]).is_err());
    }
}
