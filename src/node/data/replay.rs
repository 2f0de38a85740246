//! The receiver's sliding replay window over data frame counters (as in
//! RFC 6479 and WireGuard): a ring of 32 64-bit words, so counters up to
//! [`ReplayWindow::SIZE`] behind the newest accepted one are each accepted
//! once; older ones are refused.

use super::{DataError, MAX_COUNTER};

/// Words in the ring.
const WORDS: usize = 32;

/// Which counters were accepted, near the newest.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    /// The newest accepted counter, plus one (0: none yet).
    next: u64,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// How far behind the newest accepted counter a counter may be: one
    /// word less than the ring, so the word being cleared never holds a
    /// counter that is still in the window.
    pub const SIZE: u64 = ((WORDS - 1) * 64) as u64;

    /// Whether `counter` may be accepted (not yet seen, not too old).
    /// Nothing changes: call [`Self::commit`] once the frame opened.
    pub fn check(&self, counter: u64) -> Result<(), DataError> {
        if counter > MAX_COUNTER {
            return Err(DataError::Exhausted);
        }
        if counter >= self.next {
            return Ok(());
        }
        if self.next - 1 - counter >= Self::SIZE {
            return Err(DataError::TooOld);
        }
        let (word, bit) = place(counter);
        if self.bits[word] & bit != 0 {
            return Err(DataError::Replayed);
        }
        Ok(())
    }

    /// Records `counter` as accepted (after [`Self::check`] allowed it).
    pub fn commit(&mut self, counter: u64) {
        if counter >= self.next {
            // Clear the words after the newest one's, up to this one's.
            let new = counter / 64;
            match self.next.checked_sub(1).map(|top| top / 64) {
                Some(top) if new - top < WORDS as u64 => {
                    for w in top + 1..=new {
                        self.bits[(w % WORDS as u64) as usize] = 0;
                    }
                }
                _ => self.bits = [0; WORDS],
            }
            self.next = counter + 1;
        }
        let (word, bit) = place(counter);
        self.bits[word] |= bit;
    }
}

fn place(counter: u64) -> (usize, u64) {
    (
        ((counter / 64) % WORDS as u64) as usize,
        1 << (counter % 64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &mut ReplayWindow, c: u64) -> Result<(), DataError> {
        w.check(c)?;
        w.commit(c);
        Ok(())
    }

    #[test]
    fn each_counter_once_in_any_order() {
        let mut w = ReplayWindow::default();
        for c in [0, 2, 1, 5, 3, 4, 100, 64, 63] {
            assert_eq!(accept(&mut w, c), Ok(()), "{c}");
        }
        for c in [0, 1, 2, 3, 4, 5, 63, 64, 100] {
            assert_eq!(accept(&mut w, c), Err(DataError::Replayed), "{c}");
        }
        assert_eq!(accept(&mut w, 6), Ok(()));
    }

    #[test]
    fn old_counters_are_refused_at_the_window_edge() {
        let mut w = ReplayWindow::default();
        let top = 10_000;
        accept(&mut w, top).unwrap();
        assert_eq!(w.check(top - ReplayWindow::SIZE), Err(DataError::TooOld));
        assert_eq!(accept(&mut w, top - ReplayWindow::SIZE + 1), Ok(()));
        assert_eq!(w.check(0), Err(DataError::TooOld));
    }

    #[test]
    fn a_jump_clears_the_words_it_passes() {
        let mut w = ReplayWindow::default();
        for c in 0..3000 {
            accept(&mut w, c).unwrap();
        }
        // Move by less than the ring, then by more: counters newly inside
        // the window are free, those seen and still inside are not.
        accept(&mut w, 3000 + 700).unwrap();
        for c in 3000..3700 {
            assert_eq!(accept(&mut w, c), Ok(()), "{c}");
        }
        assert_eq!(w.check(2999), Err(DataError::Replayed));
        accept(&mut w, 1_000_000).unwrap();
        assert_eq!(accept(&mut w, 1_000_000 - 1), Ok(()));
        assert_eq!(w.check(3699), Err(DataError::TooOld));
        assert_eq!(w.check(1_000_000), Err(DataError::Replayed));
    }

    /// Against a set of everything accepted, with random steps.
    #[test]
    fn matches_a_model() {
        use std::collections::HashSet;
        let mut w = ReplayWindow::default();
        let mut seen = HashSet::new();
        let mut top = 0u64;
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let c = match x % 4 {
                0 => top + x % 300,
                _ => top.saturating_sub(x % 2100),
            };
            let expected = if seen.contains(&c) {
                Err(DataError::Replayed)
            } else if !seen.is_empty() && c < top && top - c >= ReplayWindow::SIZE {
                Err(DataError::TooOld)
            } else {
                Ok(())
            };
            let got = accept(&mut w, c);
            if expected == Err(DataError::Replayed) && got == Err(DataError::TooOld) {
                continue;
            }
            assert_eq!(got, expected, "counter {c}, top {top}");
            if got.is_ok() {
                seen.insert(c);
                top = top.max(c);
            }
        }
    }

    #[test]
    fn the_last_counter_is_refused() {
        let w = ReplayWindow::default();
        assert_eq!(w.check(u64::MAX), Err(DataError::Exhausted));
        assert_eq!(w.check(MAX_COUNTER), Ok(()));
    }
}
