//! Compiling the hot loops for the widest vector instructions the CPU has.
//!
//! The kernels are plain Rust loops written so the compiler can vectorise them. For baseline
//! x86-64 (SSE2, 128-bit registers) it judges some of them not worth it and emits scalar code;
//! with AVX2 it vectorises each of them eight f32 lanes wide. [`multiversion!`] compiles a function twice,
//! for the baseline and for AVX2, and calls the AVX2 copy when the CPU has it (checked at run
//! time, so the binary still runs on any x86-64). No intrinsics, and no fused multiply-adds the
//! source does not write: both copies compute bit-identical results.
//! `cargo bench -p spikewatch-detector` measures the difference.

#[cfg(test)]
thread_local! {
    /// Tests set this to run the baseline copies on a CPU that has AVX2.
    pub(crate) static FORCE_BASELINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the AVX2 copies can run here (the standard library caches the CPU check).
#[inline]
pub(crate) fn has_avx2() -> bool {
    #[cfg(test)]
    if FORCE_BASELINE.with(std::cell::Cell::get) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `fn name(args)` (no return value) as a dispatcher over two copies of its body, one
/// compiled for the baseline and one for AVX2. Each copy is its own non-inlined function taking
/// the arguments as parameters, so slices passed in are known not to alias (which the
/// vectoriser needs when a loop touches many columns).
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($arg: $ty),*) $body
            #[inline(never)]
            #[allow(clippy::too_many_arguments)]
            fn baseline($($arg: $ty),*) {
                imp($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            #[allow(clippy::too_many_arguments)]
            fn avx2($($arg: $ty),*) {
                imp($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            {
                if $crate::isa::has_avx2() {
                    // SAFETY: `avx2` needs nothing but the AVX2 instructions, which the CPU
                    // was just seen to have.
                    #[allow(unsafe_code)]
                    unsafe {
                        avx2($($arg),*);
                    }
                    return;
                }
            }
            baseline($($arg),*)
        }
    };
}
pub(crate) use multiversion;
