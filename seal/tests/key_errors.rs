//! What a refused key file says: what is wrong with it and, for a weak key, how to make one.

use shoal_seal::KeyError;

#[test]
fn key_file_refusals_say_what_is_wrong() {
    let cases = [
        (
            KeyError::Length { found: 4 },
            "a cluster key is 64 hexadecimal digits (32 bytes), found 4 characters",
        ),
        (
            KeyError::NotHex { at: 7 },
            "character 7 of the cluster key is not a hexadecimal digit",
        ),
        (
            KeyError::Weak,
            "the cluster key has all bytes equal: make one with `openssl rand -hex 32`",
        ),
    ];
    for (e, words) in cases {
        assert_eq!(e.to_string(), words);
    }
}
