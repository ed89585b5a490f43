//! Seal and open at 1 KiB, 8 KiB and the maximum message size, with raw
//! AES-256-GCM over the same number of bytes beside them, so the envelope's
//! own overhead (padding, header, key schedule) is visible.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use otm_core::{open, seal, Key, Passphrase, Secrets};

fn sizes() -> Vec<(&'static str, String)> {
    vec![
        ("1KiB", "a".repeat(1024)),
        ("8KiB_ascii", "b".repeat(8000)),
        // The largest message: 8000 four-byte characters, the 32 KiB bucket.
        ("max_32000B", "\u{1F600}".repeat(8000)),
    ]
}

fn envelope(c: &mut Criterion) {
    let key = Key::generate().unwrap();
    let secrets = Secrets::derive(&key, None);
    let mut group = c.benchmark_group("envelope");
    for (label, message) in sizes() {
        group.throughput(Throughput::Bytes(message.len() as u64));
        group.bench_with_input(BenchmarkId::new("seal", label), &message, |b, m| {
            b.iter(|| seal(&secrets, m).unwrap())
        });
        let sealed = seal(&secrets, &message).unwrap();
        group.bench_with_input(BenchmarkId::new("open", label), &sealed, |b, e| {
            b.iter(|| open(&secrets, e).unwrap())
        });
        let cipher = Aes256Gcm::new_from_slice(key.as_bytes()).unwrap();
        let nonce = [7u8; 12];
        group.bench_with_input(
            BenchmarkId::new("raw_aes_gcm_encrypt", label),
            &message,
            |b, m| {
                b.iter(|| {
                    let mut buf = m.as_bytes().to_vec();
                    cipher
                        .encrypt_in_place_detached(Nonce::from_slice(&nonce), b"", &mut buf)
                        .unwrap();
                    buf
                })
            },
        );
    }
    group.finish();
}

fn key_schedule(c: &mut Criterion) {
    let key = Key::generate().unwrap();
    let phrase = Passphrase::new("correct horse battery staple").unwrap();
    let mut group = c.benchmark_group("key_schedule");
    group.bench_function("derive_without_passphrase", |b| {
        b.iter(|| Secrets::derive(&key, None))
    });
    group.sample_size(10);
    group.bench_function("derive_with_passphrase_pbkdf2_600k", |b| {
        b.iter(|| Secrets::derive(&key, Some(&phrase)))
    });
    group.finish();
}

#[allow(missing_docs)] // the macro generates an undocumented pub fn
mod group {
    use super::*;
    criterion_group!(benches, envelope, key_schedule);
}
use group::benches;
criterion_main!(benches);
