//! Compiling the hot loops for the widest vector instructions the CPU has.
//!
//! The kernels are plain Rust loops written so the compiler can vectorise them. For baseline
//! x86-64 (SSE2, 128-bit registers) it judges some of them not worth it and emits scalar code;
//! with AVX2 it vectorises each of them eight f32 lanes wide, and with AVX-512 sixteen.
//! [`multiversion!`] compiles a function three times, for the baseline, for AVX2 and for
//! AVX-512, and calls the widest copy the CPU can run (checked at run time, so the binary still
//! runs on any x86-64). No intrinsics, and no fused multiply-adds the source does not write: every
//! copy computes bit-identical results. `cargo bench -p spikewatch-detector` measures the
//! difference.

/// The instruction sets the kernels are compiled for, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Isa {
    Baseline,
    Avx2,
    Avx512,
}

#[cfg(test)]
thread_local! {
    /// Tests set this to cap the copies used on a CPU that has more.
    pub(crate) static FORCE_MAX: std::cell::Cell<Isa> = const { std::cell::Cell::new(Isa::Avx512) };
}

/// The widest instruction set the kernels can use here (the standard library caches the CPU
/// checks).
#[inline]
pub(crate) fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    let isa = if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512dq")
    {
        Isa::Avx512
    } else if std::arch::is_x86_feature_detected!("avx2") {
        Isa::Avx2
    } else {
        Isa::Baseline
    };
    #[cfg(not(target_arch = "x86_64"))]
    let isa = Isa::Baseline;
    #[cfg(test)]
    let isa = isa.min(FORCE_MAX.with(std::cell::Cell::get));
    isa
}

/// Defines `fn name(args)` (no return value) as a dispatcher over three copies of its body,
/// compiled for the baseline, for AVX2 and for AVX-512. Each copy is its own non-inlined function
/// taking the arguments as parameters, so slices passed in are known not to alias (which the
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
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
            #[allow(clippy::too_many_arguments)]
            fn avx512($($arg: $ty),*) {
                imp($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            {
                match $crate::isa::detected() {
                    // SAFETY: each copy needs nothing but the instructions the CPU was just
                    // seen to have.
                    #[allow(unsafe_code)]
                    $crate::isa::Isa::Avx512 => unsafe { avx512($($arg),*) },
                    #[allow(unsafe_code)]
                    $crate::isa::Isa::Avx2 => unsafe { avx2($($arg),*) },
                    $crate::isa::Isa::Baseline => baseline($($arg),*),
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            baseline($($arg),*)
        }
    };
}
pub(crate) use multiversion;
