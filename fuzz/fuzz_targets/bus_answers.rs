//! What the system bus sends the hook back (`agent::client::one_call`): the authentication's
//! answer, then messages, read until the answer to the call. Any bytes are refused or read
//! without a panic, and reading them in pieces (the socket's) comes to the same as at once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtmasq::agent::client::one_call::read_answers;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, bytes)) = data.split_first() else {
        return;
    };
    let whole = read_answers(bytes, 2, 0);
    let pieces = read_answers(bytes, 2, usize::from(piece % 32) + 1);
    assert_eq!(whole, pieces);
});
