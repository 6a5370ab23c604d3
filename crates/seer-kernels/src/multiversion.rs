//! The `multiversion!` macro the row kernels are written with.

/// Defines `fn $name(args)` (or `unsafe fn`) whose body is compiled three times
/// (AVX-512, AVX2, baseline) and picked by [`crate::Isa::detected`]: the bodies
/// are plain loops that LLVM vectorises for whichever width it is allowed.
///
/// A body may take const parameters, given per variant after it as
/// `wide[..] narrow[..] baseline[..]`: register tiles sized to each
/// instruction set's register file (AVX2 has 16 vector registers to
/// AVX-512's 32, and a tile that does not fit is spilled to the stack).
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])* $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn inner($($arg: $ty),*) $body
            multiversion!(@dispatch [] [] $($arg: $ty),*);
            inner($($arg),*)
        }
    };
    ($(#[$m:meta])* $vis:vis fn $name:ident<$(const $c:ident : $ct:ty),+>($($arg:ident : $ty:ty),* $(,)?) $body:block
        wide[$($w:expr),+] narrow[$($nw:expr),+] baseline[$($b:expr),+]) => {
        $(#[$m])* $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn inner<$(const $c: $ct),+>($($arg: $ty),*) $body
            multiversion!(@dispatch [$($w),+] [$($nw),+] $($arg: $ty),*);
            inner::<$($b),+>($($arg),*)
        }
    };
    ($(#[$m:meta])* $vis:vis unsafe fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])* $vis unsafe fn $name($($arg: $ty),*) {
            /// # Safety
            /// The outer function's.
            #[inline(always)]
            unsafe fn inner($($arg: $ty),*) $body
            multiversion!(@dispatch [] [] $($arg: $ty),*);
            // SAFETY: our caller upholds the outer function's contract, inner's.
            unsafe { inner($($arg),*) }
        }
    };
    // Returns from the enclosing function with the widest variant the CPU runs
    // (`inner` with the wide or narrow const arguments); falls through on the
    // baseline.
    (@dispatch [$($w:expr),*] [$($nw:expr),*] $($arg:ident : $ty:ty),*) => {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
            #[allow(unused_unsafe)]
            unsafe fn wide($($arg: $ty),*) {
                // SAFETY: for an `unsafe fn`, our caller upholds its contract;
                // for a safe one, `inner` is safe and the block is empty of ops.
                unsafe { inner::<$($w),*>($($arg),*) }
            }
            #[target_feature(enable = "avx2,fma")]
            #[allow(unused_unsafe)]
            unsafe fn narrow($($arg: $ty),*) {
                // SAFETY: as in `wide`.
                unsafe { inner::<$($nw),*>($($arg),*) }
            }
            match $crate::isa::Isa::detected() {
                // SAFETY: the CPU supports the features (checked at detection),
                // and for an `unsafe fn` our caller upholds its contract.
                $crate::isa::Isa::Avx512 | $crate::isa::Isa::Amx => return unsafe { wide($($arg),*) },
                // SAFETY: as above.
                $crate::isa::Isa::Avx2 => return unsafe { narrow($($arg),*) },
                $crate::isa::Isa::Portable => {}
            }
        }
    };
}
