//! Compiling the hot loops for the widest vector instructions the CPU has.
//!
//! The kernels are plain Rust loops written so the compiler can vectorise them. For baseline
//! x86-64 (SSE2, two f64 lanes) it judges most of them not worth it and emits scalar code; with
//! AVX2 it vectorises each of them four lanes wide. [`widest`] runs a [`Pass`] through a copy
//! compiled with AVX2 when the CPU has it (checked at run time, so the binary still runs on any
//! x86-64), and as is otherwise. No intrinsics, and no fused multiply-adds the source does not
//! write: both copies compute bit-identical results. `cargo bench -p spikewatch-detector`
//! measures the difference.

/// A loop nest to compile for the widest instructions: [`widest`] runs it. `run` must be
/// `#[inline(always)]` (and so must what it calls), or it is compiled once, for the baseline.
pub(crate) trait Pass {
    fn run(self);
}

/// Runs `pass`, compiled for AVX2 when the CPU has it.
#[inline(always)]
pub(crate) fn widest(pass: impl Pass) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            fn avx2(pass: impl Pass) {
                pass.run();
            }
            // SAFETY: `avx2` needs nothing but the AVX2 instructions, which the CPU was just
            // seen to have.
            #[allow(unsafe_code)]
            unsafe {
                avx2(pass);
            }
            return;
        }
    }
    pass.run();
}
