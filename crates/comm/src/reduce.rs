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

mod sealed {
    /// Only the plain numbers below are elements: the fast paths view their
    /// memory as bytes and bytes as them, which is sound only for types
    /// without padding whose every bit pattern is a value.
    pub trait Plain {}
    impl Plain for f64 {}
    impl Plain for f32 {}
    impl Plain for i64 {}
    impl Plain for u64 {}
}

/// Numbers the built-in reductions work on (f64, f32, i64, u64).
pub trait Element: sealed::Plain + Copy + Send + Sync + 'static {
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

/// Encodes a slice as the bytes the reductions work on (little-endian): on a
/// little-endian machine that is the slice's memory, copied once.
pub fn encode<T: Element>(values: &[T]) -> Bytes {
    if let Some(bytes) = memory_of(values) {
        return Bytes::copy_from_slice(bytes);
    }
    let mut out = Vec::with_capacity(values.len() * T::SIZE);
    for v in values {
        v.write(&mut out);
    }
    Bytes::from(out)
}

/// The slice's memory, which is its encoding on a little-endian machine
/// (`None` on a big-endian one).
pub(crate) fn memory_of<T: Element>(values: &[T]) -> Option<&[u8]> {
    // SAFETY: T is a plain number (sealed): no padding; the view covers
    // exactly the slice's initialised memory and borrows it.
    cfg!(target_endian = "little")
        .then(|| unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) })
}

/// Decodes bytes made by [`encode`].
pub fn decode<T: Element>(bytes: &[u8]) -> Result<Vec<T>> {
    let mut out = Vec::new();
    decode_into(bytes, &mut out)?;
    Ok(out)
}

/// Decodes parts made by [`encode`] into one vector, in order: one copy.
pub(crate) fn decode_concat<T: Element>(parts: &[Bytes]) -> Result<Vec<T>> {
    let total: usize = parts.iter().map(Bytes::len).sum();
    let mut out = Vec::with_capacity(total / T::SIZE);
    for part in parts {
        decode_into(part, &mut out)?;
    }
    Ok(out)
}

/// Decodes parts made by [`encode`] over `out`, in order: one copy.
pub(crate) fn decode_over<T: Element>(parts: &[Bytes], out: &mut [T]) -> Result<()> {
    let total: usize = parts.iter().map(Bytes::len).sum();
    if total != std::mem::size_of_val(out) {
        return Err(Error::invalid(format!("{total} bytes cannot fill {} elements", out.len())));
    }
    let mut at = 0;
    for part in parts {
        let n = part.len() / T::SIZE;
        let dst = &mut out[at..at + n];
        if cfg!(target_endian = "little") {
            // SAFETY: dst has room for exactly n elements (n * SIZE bytes, copied
            // bytewise); every bit pattern is a value of the plain number T.
            unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), dst.as_mut_ptr().cast::<u8>(), n * T::SIZE) };
        } else {
            dst.iter_mut().zip(part.chunks_exact(T::SIZE)).for_each(|(d, b)| *d = T::read(b));
        }
        at += n;
    }
    Ok(())
}

/// Appends the elements `bytes` encodes to `out`.
fn decode_into<T: Element>(bytes: &[u8], out: &mut Vec<T>) -> Result<()> {
    if !bytes.len().is_multiple_of(T::SIZE) {
        return Err(Error::invalid(format!(
            "{} bytes do not hold a whole number of {}-byte elements",
            bytes.len(),
            T::SIZE
        )));
    }
    let n = bytes.len() / T::SIZE;
    if cfg!(target_endian = "little") {
        out.reserve(n);
        // SAFETY: after the reserve there is room for n more elements (n * SIZE
        // bytes, copied bytewise, so the source's alignment does not matter),
        // and every bit pattern is a value of the plain number T (sealed).
        unsafe {
            let end = out.as_mut_ptr().add(out.len());
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), end.cast::<u8>(), n * T::SIZE);
            out.set_len(out.len() + n);
        }
        return Ok(());
    }
    out.extend(bytes.chunks_exact(T::SIZE).map(T::read));
    Ok(())
}

/// Combines `b` into `acc` element-wise over a typed view of `acc`, when it
/// is aligned for T (vectorisable); false when it is not (the caller goes
/// element by element through the bytes). `b` may sit anywhere: a part
/// received inside a bundle usually starts at an odd offset, and reading it
/// with unaligned loads costs the same as aligned ones on current CPUs.
fn combine_aligned<T: Element>(op: Op, acc: &mut [u8], b: &[u8]) -> bool {
    if !cfg!(target_endian = "little") {
        return false;
    }
    // SAFETY: T is a plain number (sealed): every bit pattern is a value;
    // align_to only views the aligned middle, and both ends are checked empty.
    let (head, accs, tail) = unsafe { acc.align_to_mut::<T>() };
    if !head.is_empty() || !tail.is_empty() {
        return false;
    }
    // SAFETY: as above, for the input.
    let (head, bs, tail) = unsafe { b.align_to::<T>() };
    if head.is_empty() && tail.is_empty() {
        // The operation chosen outside the loop: each loop is one operation,
        // which the compiler vectorises.
        match op {
            Op::Sum => accs.iter_mut().zip(bs).for_each(|(x, y)| *x = T::apply(Op::Sum, *x, *y)),
            Op::Min => accs.iter_mut().zip(bs).for_each(|(x, y)| *x = T::apply(Op::Min, *x, *y)),
            Op::Max => accs.iter_mut().zip(bs).for_each(|(x, y)| *x = T::apply(Op::Max, *x, *y)),
        }
        return true;
    }
    let bs = b.chunks_exact(T::SIZE).map(T::read);
    match op {
        Op::Sum => accs.iter_mut().zip(bs).for_each(|(x, y)| *x = T::apply(Op::Sum, *x, y)),
        Op::Min => accs.iter_mut().zip(bs).for_each(|(x, y)| *x = T::apply(Op::Min, *x, y)),
        Op::Max => accs.iter_mut().zip(bs).for_each(|(x, y)| *x = T::apply(Op::Max, *x, y)),
    }
    true
}

/// The combining function of a built-in operation on `T`: element-wise, in place.
pub(crate) fn builtin<T: Element>(op: Op) -> impl Fn(&mut Vec<u8>, &[u8]) -> Result<()> + Send + Sync {
    move |acc: &mut Vec<u8>, b: &[u8]| combine_into::<T>(op, acc, b)
}

/// Combines the encoded values `b` into `acc`, element by element.
pub(crate) fn combine_into<T: Element>(op: Op, acc: &mut [u8], b: &[u8]) -> Result<()> {
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
    if combine_aligned::<T>(op, acc, b) {
        return Ok(());
    }
    for (x, y) in acc.chunks_exact_mut(T::SIZE).zip(b.chunks_exact(T::SIZE)) {
        T::apply(op, T::read(x), T::read(y)).put(x);
    }
    Ok(())
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
    fn misaligned_inputs_combine_as_aligned_ones_do() {
        // Bytes at an odd offset take the element-by-element path; the result is the same.
        let a: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();
        let b: Vec<f64> = (0..1000).map(|i| 1000.0 - i as f64).collect();
        let mut shifted = vec![0u8; 1 + 8000];
        shifted[1..].copy_from_slice(&encode(&b));
        let mut aligned = encode(&a).to_vec();
        builtin::<f64>(Op::Sum)(&mut aligned, &encode(&b)).unwrap();
        let mut slow = encode(&a).to_vec();
        builtin::<f64>(Op::Sum)(&mut slow, &shifted[1..]).unwrap();
        assert_eq!(aligned, slow);
        let sum: Vec<f64> = decode(&aligned).unwrap();
        assert!(sum.iter().enumerate().all(|(i, s)| *s == i as f64 * 0.5 + 1000.0 - i as f64));
        assert_eq!(decode::<f64>(&shifted[1..]).unwrap(), b, "decode reads unaligned bytes");
        assert_eq!(encode(&[1.5f64, -2.0]).to_vec(), [1.5f64.to_le_bytes(), (-2.0f64).to_le_bytes()].concat());
    }

    #[test]
    fn mismatched_lengths_are_an_error() {
        let sum = builtin::<u64>(Op::Sum);
        assert!(sum(&mut encode(&[1u64]).to_vec(), &encode(&[1u64, 2])).is_err());
        assert!(decode::<f64>(&[0u8; 7]).is_err());
    }
}
