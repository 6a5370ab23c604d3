//! Denormal floats (below 1.2e-38 in magnitude) read and written as zero
//! while the heavy kernels run, through the thread's MXCSR (FTZ and DAZ),
//! restored when they return.
//!
//! Why: on Intel cores an SSE/AVX multiply or FMA whose input or result is
//! denormal takes a microcode assist of a hundred cycles or more. A model
//! whose activations drift into that range then runs an order of magnitude
//! slower: SAM ViT-B with random weights took 77.6 s an image on an Intel
//! Xeon (family 6 model 207) and 4.8 s with the flags set, against 7 s on an
//! AMD Zen 4, whose cores assist far less (2026-12-07). TensorFlow sets the
//! same flags in every thread of its pools; ONNX Runtime and OpenVINO offer
//! them as options. What changes: values that small become 0, which moves no
//! result at the 1e-4 of the parity tests (a sum reaching them adds less than
//! one ulp of any normal float).
//!
//! Scoped rather than set once per thread: the rest of a process (Python's
//! own arithmetic, image resizing) keeps IEEE semantics.

/// FTZ (bit 15): denormal results become 0. DAZ (bit 6): denormal inputs
/// read as 0.
#[cfg(target_arch = "x86_64")]
const FLUSH_BITS: u32 = (1 << 15) | (1 << 6);

/// While alive, denormals are flushed on this thread; dropping it puts the
/// thread's previous MXCSR back. Costs two MXCSR writes: take one per task of
/// work (a block of tiles, one attention head), not per tile.
pub struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

impl FlushDenormals {
    #[inline]
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let saved = read_mxcsr();
            if saved & FLUSH_BITS != FLUSH_BITS {
                write_mxcsr(saved | FLUSH_BITS);
            }
            Self { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self {}
    }
}

impl Default for FlushDenormals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlushDenormals {
    #[inline]
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if self.saved & FLUSH_BITS != FLUSH_BITS {
            write_mxcsr(self.saved);
        }
    }
}

/// This thread's MXCSR (`stmxcsr`; `_mm_getcsr` is deprecated).
#[cfg(target_arch = "x86_64")]
#[inline]
fn read_mxcsr() -> u32 {
    let mut value = 0u32;
    // SAFETY: stmxcsr stores the 32-bit register to the address given, a
    // local u32 here; every x86-64 CPU has SSE.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut value, options(nostack, preserves_flags))
    };
    value
}

/// Sets this thread's MXCSR (`ldmxcsr`) to `value`, a value read by
/// [`read_mxcsr`] with at most the FTZ and DAZ bits added (no reserved bit
/// set, so the load cannot fault).
#[cfg(target_arch = "x86_64")]
#[inline]
fn write_mxcsr(value: u32) {
    // SAFETY: ldmxcsr loads the register from a local u32; `value` keeps the
    // reserved bits as the CPU gave them (callers add only FTZ/DAZ, which
    // every x86-64 CPU supports). Changing rounding or flush modes affects
    // only this thread's float arithmetic, restored by FlushDenormals' drop.
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &value, options(nostack, preserves_flags)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest normal f32 halved: a denormal.
    fn denormal() -> f32 {
        std::hint::black_box(f32::MIN_POSITIVE) / std::hint::black_box(2.0)
    }

    #[test]
    fn denormals_are_zero_inside_the_guard_and_kept_after_it() {
        let before = denormal();
        assert!(before > 0.0 && !before.is_normal());
        {
            let _flush = FlushDenormals::new();
            #[cfg(target_arch = "x86_64")]
            assert_eq!(denormal(), 0.0);
            // Nested guards leave the flags as the outer one set them.
            drop(FlushDenormals::new());
            #[cfg(target_arch = "x86_64")]
            assert_eq!(denormal(), 0.0);
        }
        assert_eq!(denormal(), before);
        assert_eq!(
            std::hint::black_box(1.5f32) * std::hint::black_box(2.0),
            3.0
        );
    }
}
