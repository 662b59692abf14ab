//! Image trees. (to be written)

