//! Day 16: the KV block pool and paged attention (plain data and f32
//! slices; MLX arrays only for the GPU kernel).
//!
//! The pool: a hand-worked run (allocation order, copy-on-write of a shared
//! partial block, out of blocks), and random alloc/append/fork/free
//! sequences checked after every operation against an independent model:
//! counts equal the holders, no block on the free list twice or while held,
//! free + used = total, every table reads back its own tokens through a
//! simulated KV storage (which copy-on-write must protect). Out of blocks
//! is an `Error::OutOfBlocks` naming the numbers, never a panic. Paged
//! attention: against dense attention (a scalar f64 oracle written here)
//! over shuffled blocks with GQA (property), and a hand-worked case.
//! On a GPU (`gpu_*`): the CUDA kernel of `paged_attention_gpu` against the
//! same oracle and against the CPU kernel, a batch of sequences over
//! shuffled and shared blocks (f32, bf16, f16; block sizes 1 to 32; GQA), at
//! the day's `[day.tolerance_gpu]`; skipped without a usable GPU. Its
//! argument checks run everywhere.

use mlx_rs::{Array, Dtype};
use proptest::prelude::*;
use tiny_llm_common::{cpu_bridge, Error};
use tiny_llm_grader::device::{require_gpu, skip};
use tiny_llm_grader::gpu_check::{cast_to, check_gpu, seeded};
use tiny_llm_grader::imp::block_pool::{
    BlockAllocator, BlockCopy, BlockId, BlockPool, BlockTable, Slot,
};
use tiny_llm_grader::imp::paged_attention_cpu::{paged_attention, PagedKv};
use tiny_llm_grader::imp::paged_attention_gpu;
use tiny_llm_grader::prop::check as check_property;
use tiny_llm_grader::{ok, should_fail, should_fail_naming};

fn b(i: u32) -> BlockId {
    BlockId(i)
}

fn slot(block: u32, offset: usize) -> Slot {
    Slot {
        block: b(block),
        offset,
        copy: None,
    }
}

/// Slot `offset` of block `dst`, a copy of block `src`.
fn cow(dst: u32, offset: usize, src: u32) -> Slot {
    let copy = Some(BlockCopy {
        src: b(src),
        dst: b(dst),
    });
    Slot {
        block: b(dst),
        offset,
        copy,
    }
}

/// One token appended to `t`.
#[track_caller]
fn put(pool: &mut BlockPool, t: &mut BlockTable) -> Slot {
    ok("append_token", pool.append_token(t))
}

/// `assert_eq!` with the `[wrong numbers]` tag and what was compared.
#[track_caller]
fn same<T: PartialEq + std::fmt::Debug>(got: T, want: T, what: &str) {
    assert_eq!(
        got, want,
        "[wrong numbers] {what} (left: yours, right: expected)"
    );
}

#[test]
fn block_pool_hand_worked() {
    let mut pool = ok("BlockPool::new", BlockPool::new(4, 2));
    let mut t = BlockTable::new();
    // blocks are taken 0, 1, 2, ... from a fresh pool
    same(put(&mut pool, &mut t), slot(0, 0), "token 0");
    same(put(&mut pool, &mut t), slot(0, 1), "token 1");
    same(put(&mut pool, &mut t), slot(1, 0), "token 2");
    let table = (t.blocks.clone(), t.num_tokens);
    same(table, (vec![b(0), b(1)], 3), "table");
    let mut u = ok("fork", pool.fork(&t));
    let counts = |p: &BlockPool| (0..4).map(|i| p.ref_count(b(i))).collect::<Vec<_>>();
    same(counts(&pool), vec![2, 2, 0, 0], "ref counts after a fork");
    // the fork writes into the shared partial block 1: copied to block 2
    let want = cow(2, 1, 1);
    same(put(&mut pool, &mut u), want, "copy-on-write");
    same(u.blocks.clone(), vec![b(0), b(2)], "forked table");
    same(counts(&pool), vec![2, 1, 1, 0], "ref counts after the copy");
    // the original now owns block 1 alone: no copy; then full: a new block
    same(put(&mut pool, &mut t), slot(1, 1), "token 3");
    same(put(&mut pool, &mut t), slot(3, 0), "token 4");
    same(pool.num_free(), 0, "free blocks");
    // the fork is full too and the pool is empty: an error, nothing changes
    let before = u.clone();
    match pool.append_token(&mut u) {
        Err(Error::OutOfBlocks { asked: 1, free: 0 }) => {}
        other => panic!("[wrong numbers] append_token on an empty pool: {other:?}, expected OutOfBlocks {{ asked: 1, free: 0 }}"),
    }
    same(&u, &before, "a failed append changed the table");
    ok("free_table", pool.free_table(&mut t));
    same(t, BlockTable::new(), "a freed table");
    // block 0 is still held by the fork; blocks 1 and 3 are free, in that order
    same(
        counts(&pool),
        vec![1, 0, 1, 0],
        "ref counts after freeing the original",
    );
    same(pool.free_list(), vec![b(1), b(3)], "free list");
    ok("free_table", pool.free_table(&mut u));
    same(pool.num_free(), 4, "free blocks at the end");
}

#[test]
fn out_of_blocks_is_an_error_naming_the_numbers() {
    let mut pool = ok("BlockPool::new", BlockPool::new(4, 16));
    let e = should_fail("allocate_n", "5 of 4", pool.allocate_n(5));
    assert!(
        matches!(e, Error::OutOfBlocks { asked: 5, free: 4 }),
        "[wrong numbers] allocate_n(5) of 4: {e:?}, expected OutOfBlocks {{ asked: 5, free: 4 }}"
    );
    let msg = e.to_string();
    same(msg.contains("5") && msg.contains("4"), true, &msg);
    same(pool.num_free(), 4, "free blocks after a failed allocate_n");
    let got = ok("allocate_n", pool.allocate_n(4));
    same(got, vec![b(0), b(1), b(2), b(3)], "allocate_n(4)");
    let e = should_fail("allocate", "empty pool", pool.allocate());
    assert!(
        matches!(e, Error::OutOfBlocks { asked: 1, free: 0 }),
        "[wrong numbers] {e:?}"
    );
}

#[test]
fn pool_rejects_bad_input() {
    should_fail_naming("BlockPool::new", "0 blocks", BlockPool::new(0, 4), &["0"]);
    should_fail_naming("BlockPool::new", "size 0", BlockPool::new(4, 0), &["0"]);
    let mut pool = ok("BlockPool::new", BlockPool::new(2, 4));
    let r = pool.release(b(1));
    should_fail_naming("release", "free block", r, &["block 1", "free"]);
    should_fail_naming("retain", "outside", pool.retain(b(7)), &["block 7"]);
    let mut bad = BlockTable {
        blocks: vec![],
        num_tokens: 3,
    };
    should_fail(
        "append_token",
        "3 tokens in 0 blocks",
        pool.append_token(&mut bad),
    );
    let mut stale = BlockTable {
        blocks: vec![b(0)],
        num_tokens: 1,
    };
    should_fail_naming(
        "free_table",
        "free block",
        pool.free_table(&mut stale),
        &["block 0"],
    );
    assert_eq!(
        pool.num_free(),
        2,
        "[wrong numbers] a rejected call changed the pool"
    );
}

// ---- pool property --------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    New,
    Append(usize, usize),
    Fork(usize),
    Free(usize),
    Alloc,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::New),
        4 => (0usize..8, 1usize..6).prop_map(|(i, n)| Op::Append(i, n)),
        2 => (0usize..8).prop_map(Op::Fork),
        2 => (0usize..8).prop_map(Op::Free),
        1 => Just(Op::Alloc),
    ]
}

/// Checks the pool against the holders we know of: the tables and the
/// blocks allocated directly.
fn check_pool(
    pool: &BlockPool,
    tables: &[(BlockTable, Vec<u64>)],
    direct: &[BlockId],
    storage: &[Vec<Option<u64>>],
    bs: usize,
) -> Result<(), TestCaseError> {
    let n = pool.num_blocks();
    let mut holders = vec![0usize; n];
    for (t, tokens) in tables {
        prop_assert_eq!(t.blocks.len(), t.num_tokens.div_ceil(bs), "table {:?}", t);
        prop_assert_eq!(t.num_tokens, tokens.len());
        let mut seen = std::collections::HashSet::new();
        for &blk in &t.blocks {
            prop_assert!(seen.insert(blk), "{} twice in one table {:?}", blk, t);
            holders[blk.index()] += 1;
        }
        // the table reads back its own tokens
        for (i, &tok) in tokens.iter().enumerate() {
            let (blk, off) = t.slot_of(i, bs).unwrap();
            prop_assert_eq!(
                storage[blk.index()][off],
                Some(tok),
                "token {} of a table reads another's (copy-on-write missed?)",
                i
            );
        }
    }
    for &d in direct {
        holders[d.index()] += 1;
    }
    let free = pool.free_list();
    let free_set: std::collections::HashSet<_> = free.iter().copied().collect();
    prop_assert_eq!(
        free_set.len(),
        free.len(),
        "a block twice on the free list: {:?}",
        free
    );
    prop_assert_eq!(pool.num_free(), free.len());
    prop_assert_eq!(pool.num_free() + pool.num_used(), n, "free + used != total");
    for (i, &h) in holders.iter().enumerate() {
        let blk = BlockId(i as u32);
        prop_assert_eq!(pool.ref_count(blk), h, "{} ref count vs its holders", blk);
        prop_assert_eq!(
            free_set.contains(&blk),
            h == 0,
            "{} free while held, or leaked",
            blk
        );
    }
    Ok(())
}

#[test]
fn prop_pool_invariants_under_random_operations() {
    // how often the cases copied on write and ran out of blocks
    let copies = std::cell::Cell::new(0usize);
    let out_of_blocks = std::cell::Cell::new(0usize);
    check_property(
        "prop_pool_invariants_under_random_operations",
        256,
        (1usize..12, 1usize..5, prop::collection::vec(op(), 1..60)),
        |(num_blocks, bs, ops)| {
            let mut pool = ok("BlockPool::new", BlockPool::new(num_blocks, bs));
            let mut tables: Vec<(BlockTable, Vec<u64>)> = Vec::new();
            let mut direct: Vec<BlockId> = Vec::new();
            let mut storage = vec![vec![None; bs]; num_blocks];
            let mut next_token = 0u64;
            for op in ops {
                match op {
                    Op::New => tables.push((BlockTable::new(), Vec::new())),
                    Op::Alloc => {
                        let free = pool.num_free();
                        match pool.allocate() {
                            Ok(blk) => direct.push(blk),
                            Err(Error::OutOfBlocks { asked: 1, free: 0 }) if free == 0 => {}
                            Err(e) => return Err(TestCaseError::fail(format!("allocate: {e}"))),
                        }
                    }
                    Op::Append(i, k) if !tables.is_empty() => {
                        let i = i % tables.len();
                        for _ in 0..k {
                            let (t, tokens) = &mut tables[i];
                            let before = t.clone();
                            let free = pool.num_free();
                            match pool.append_token(t) {
                                Ok(s) => {
                                    if let Some(c) = s.copy {
                                        copies.set(copies.get() + 1);
                                        storage[c.dst.index()] = storage[c.src.index()].clone();
                                    }
                                    storage[s.block.index()][s.offset] = Some(next_token);
                                    tokens.push(next_token);
                                    next_token += 1;
                                }
                                Err(Error::OutOfBlocks { asked: 1, free: 0 }) => {
                                    out_of_blocks.set(out_of_blocks.get() + 1);
                                    prop_assert_eq!(free, 0, "out of blocks with blocks free");
                                    prop_assert_eq!(&*t, &before, "a failed append changed it");
                                }
                                Err(e) => return Err(TestCaseError::fail(format!("append: {e}"))),
                            }
                        }
                    }
                    Op::Fork(i) if !tables.is_empty() => {
                        let i = i % tables.len();
                        let forked = ok("fork", pool.fork(&tables[i].0));
                        prop_assert_eq!(&forked, &tables[i].0, "a fork differs");
                        let tokens = tables[i].1.clone();
                        tables.push((forked, tokens));
                    }
                    Op::Free(i) if !tables.is_empty() => {
                        let (mut t, _) = tables.swap_remove(i % tables.len());
                        ok("free_table", pool.free_table(&mut t));
                        if let Some(d) = direct.pop() {
                            ok("release", pool.release(d));
                        }
                    }
                    _ => {}
                }
                check_pool(&pool, &tables, &direct, &storage, bs)?;
            }
            for (mut t, _) in tables.drain(..) {
                ok("free_table", pool.free_table(&mut t));
            }
            for d in direct.drain(..) {
                ok("release", pool.release(d));
            }
            prop_assert_eq!(pool.num_free(), num_blocks, "blocks leaked at the end");
            Ok(())
        },
    );
    assert!(
        copies.get() > 0 && out_of_blocks.get() > 0,
        "[wrong numbers] the cases made {} copies on write and ran out of blocks {} times: \
         expected both to happen",
        copies.get(),
        out_of_blocks.get()
    );
}

// ---- paged attention ---------------------------------------------------------------

/// Dense attention in f64 over contiguous `[S, H_kv, D]` keys and values,
/// scale `1 / sqrt(D)`.
fn dense_attention(q: &[f32], h: usize, kv: (&[f32], &[f32]), hkv: usize, d: usize) -> Vec<f32> {
    let (k, v, scale) = (kv.0, kv.1, 1.0 / (d as f64).sqrt());
    let s = k.len() / (hkv * d);
    let mut out = vec![0f32; h * d];
    for head in 0..h {
        let g = head / (h / hkv);
        let scores: Vec<f64> = (0..s)
            .map(|t| {
                (0..d)
                    .map(|i| q[head * d + i] as f64 * k[(t * hkv + g) * d + i] as f64)
                    .sum::<f64>()
                    * scale
            })
            .collect();
        let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = w.iter().sum();
        for i in 0..d {
            let acc: f64 = (0..s).map(|t| w[t] * v[(t * hkv + g) * d + i] as f64).sum();
            out[head * d + i] = (acc / z) as f32;
        }
    }
    out
}

#[test]
fn paged_attention_hand_worked() {
    // 1 head, D = 2, blocks of 2 tokens; 3 tokens in blocks [2, 0] of 3.
    // q = [1, 0], scale 1: scores = k[.][0] = 0, ln 2, 0 -> weights
    // 1 : 2 : 1, out = (v0 + 2 v1 + v2) / 4 = ([4,0] + [0,16] + [4,4]) / 4 = [2, 5].
    let ln2 = std::f32::consts::LN_2;
    let mut keys = vec![9f32; 3 * 2 * 2];
    let mut values = vec![-7f32; 3 * 2 * 2];
    // token 0 -> block 2 slot 0, token 1 -> block 2 slot 1, token 2 -> block 0 slot 0
    for (blk, slot, k, v) in [
        (2, 0, [0.0, 5.0], [4.0, 0.0]),
        (2, 1, [ln2, -3.0], [0.0, 8.0]),
        (0, 0, [0.0, 1.0], [4.0, 4.0]),
    ] {
        let o = (blk * 2 + slot) * 2;
        keys[o..o + 2].copy_from_slice(&k);
        values[o..o + 2].copy_from_slice(&v);
    }
    let kv = PagedKv {
        keys: &keys,
        values: &values,
        num_blocks: 3,
        block_size: 2,
        num_kv_heads: 1,
        head_dim: 2,
    };
    let out = ok(
        "paged_attention",
        paged_attention(&[1.0, 0.0], 1, &kv, &[b(2), b(0)], 3, 1.0),
    );
    for (got, want) in out.iter().zip([2.0f32, 5.0]) {
        assert!(
            (got - want).abs() < 1e-5,
            "[wrong numbers] paged_attention: {out:?}, expected [2, 5]"
        );
    }
}

#[test]
fn prop_paged_attention_equals_dense_over_shuffled_blocks() {
    let case = (
        1usize..4,
        1usize..4,
        1usize..9,
        1usize..6,
        1usize..40,
        0usize..4,
    )
        .prop_flat_map(|(hkv, group, d, bs, ctx, spare)| {
            let needed = ctx.div_ceil(bs);
            let nb = needed + spare;
            let h = hkv * group;
            (
                Just((hkv, h, d, bs, ctx, nb)),
                Just((0..nb as u32).collect::<Vec<u32>>()).prop_shuffle(),
                prop::collection::vec(-2.0f32..2.0, h * d),
                prop::collection::vec(-2.0f32..2.0, nb * bs * hkv * d),
                prop::collection::vec(-2.0f32..2.0, nb * bs * hkv * d),
            )
        });
    check_property(
        "prop_paged_attention_equals_dense_over_shuffled_blocks",
        256,
        case,
        |((hkv, h, d, bs, ctx, nb), perm, q, keys, values)| {
            let table: Vec<BlockId> = perm[..ctx.div_ceil(bs)].iter().map(|&i| b(i)).collect();
            let kv = PagedKv {
                keys: &keys,
                values: &values,
                num_blocks: nb,
                block_size: bs,
                num_kv_heads: hkv,
                head_dim: d,
            };
            let scale = 1.0 / (d as f32).sqrt();
            let got = ok(
                "paged_attention",
                paged_attention(&q, h, &kv, &table, ctx, scale),
            );
            // gather the context's keys and values through the table
            let row = hkv * d;
            let (mut gk, mut gv) = (Vec::new(), Vec::new());
            for t in 0..ctx {
                let o = (table[t / bs].index() * bs + t % bs) * row;
                gk.extend_from_slice(&keys[o..o + row]);
                gv.extend_from_slice(&values[o..o + row]);
            }
            let want = dense_attention(&q, h, (&gk, &gv), hkv, d);
            prop_assert_eq!(got.len(), want.len(), "output length");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                prop_assert!(
                    (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
                    "element {} (head {}): {} vs dense {}",
                    i,
                    i / d,
                    g,
                    w
                );
            }
            Ok(())
        },
    );
}

#[test]
#[allow(clippy::type_complexity)] // (case, query length, storage, table, context, names)
fn paged_attention_rejects_bad_shapes() {
    let keys = vec![0f32; 2 * 2 * 2];
    let kv = PagedKv {
        keys: &keys,
        values: &keys,
        num_blocks: 2,
        block_size: 2,
        num_kv_heads: 1,
        head_dim: 2,
    };
    let gqa = PagedKv {
        num_kv_heads: 2,
        head_dim: 1,
        ..kv
    };
    let short = PagedKv {
        keys: &keys[..7],
        ..kv
    };
    let q = [0f32; 6];
    let cases: [(&str, usize, &PagedKv, &[BlockId], usize, &[&str]); 6] = [
        ("5 tokens, 2 blocks", 2, &kv, &[b(0), b(1)], 5, &["5", "3"]),
        ("block outside the pool", 2, &kv, &[b(4)], 1, &["block 4"]),
        ("query of 3 values", 3, &kv, &[b(0)], 1, &["3", "2"]),
        ("3 heads over 2 kv heads", 3, &gqa, &[b(0)], 1, &["3", "2"]),
        ("keys too short", 2, &short, &[b(0)], 1, &["keys", "7", "8"]),
        ("context 0", 2, &kv, &[b(0)], 0, &["0"]),
    ];
    for (case, q_len, kv, table, ctx, needles) in cases {
        let heads = if case.starts_with("3 heads") { 3 } else { 1 };
        let r = paged_attention(&q[..q_len], heads, kv, table, ctx, 1.0);
        should_fail_naming("paged_attention", case, r, needles);
    }
}

// ---- on a GPU: the CUDA kernel of `paged_attention_gpu` ----------------------------
//
// A batch of sequences of different lengths, their blocks drawn from a seeded
// shuffle of the pool (never in order, some sequences sharing their first
// block as a forked prefix does), unused table entries -1 (never read),
// against `dense_attention` (f64, above) over the keys and values gathered
// through the tables, and against the CPU kernel of this day. At the day's
// GPU tolerance (`[day.tolerance_gpu]`). Without a usable GPU they are
// skipped; the argument checks run everywhere.

/// One GPU case: heads, kv heads, head width, block size, the sequences'
/// context lengths, whether sequences 1.. share sequence 0's first block,
/// and the query's and the pools' dtypes.
struct GpuCase {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    block_size: usize,
    lens: Vec<usize>,
    shared_prefix: bool,
    q_dtype: Dtype,
    kv_dtype: Dtype,
}

impl GpuCase {
    fn name(&self) -> String {
        format!(
            "H={} H_kv={} D={} block_size={} lens={:?} shared_prefix={} q={:?} kv={:?}",
            self.heads,
            self.kv_heads,
            self.head_dim,
            self.block_size,
            self.lens,
            self.shared_prefix,
            self.q_dtype,
            self.kv_dtype
        )
    }
}

/// The arrays of one case, and the same values on the host (f32, after the
/// cast to the case's dtypes) with each sequence's block table.
struct GpuInputs {
    q: Array,
    k: Array,
    v: Array,
    tables: Array,
    lens: Array,
    host_q: Vec<f32>,
    host_k: Vec<f32>,
    host_v: Vec<f32>,
    host_tables: Vec<Vec<BlockId>>,
    num_blocks: usize,
}

/// `0..n` shuffled by an xorshift64 stream seeded by `seed` (Fisher-Yates).
fn seeded_permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p.swap(i, (s % (i as u64 + 1)) as usize);
    }
    p
}

fn host_values(a: &Array, what: &str) -> Vec<f32> {
    let h = ok(what, cpu_bridge::host_f32(a, what));
    ok(what, h.slice::<f32>()).to_vec()
}

fn gpu_inputs(c: &GpuCase, seed: u64) -> GpuInputs {
    let (bs, hkv, d) = (c.block_size, c.kv_heads, c.head_dim);
    let needed: Vec<usize> = c.lens.iter().map(|l| l.div_ceil(bs)).collect();
    let num_blocks = needed.iter().sum::<usize>() + 3;
    let perm = seeded_permutation(num_blocks, seed);
    let mut next = 0;
    let mut host_tables: Vec<Vec<BlockId>> = Vec::new();
    for (i, &n) in needed.iter().enumerate() {
        let mut t: Vec<BlockId> = perm[next..next + n].iter().map(|&x| b(x)).collect();
        next += n;
        if c.shared_prefix && i > 0 {
            t[0] = host_tables[0][0];
        }
        host_tables.push(t);
    }
    let max_blocks = needed.iter().max().copied().unwrap_or(1) + 1;
    let mut flat = vec![-1i32; c.lens.len() * max_blocks];
    for (i, t) in host_tables.iter().enumerate() {
        for (j, blk) in t.iter().enumerate() {
            flat[i * max_blocks + j] = blk.index() as i32;
        }
    }
    let batch = c.lens.len() as i32;
    let pool = [num_blocks as i32, bs as i32, hkv as i32, d as i32];
    let q = cast_to(
        &seeded(&[batch, c.heads as i32, d as i32], seed + 1, 2.0),
        c.q_dtype,
    );
    let k = cast_to(&seeded(&pool, seed + 2, 2.0), c.kv_dtype);
    let v = cast_to(&seeded(&pool, seed + 3, 2.0), c.kv_dtype);
    let lens: Vec<i32> = c.lens.iter().map(|&l| l as i32).collect();
    GpuInputs {
        host_q: host_values(&q, "query"),
        host_k: host_values(&k, "key_pool"),
        host_v: host_values(&v, "value_pool"),
        q,
        k,
        v,
        tables: Array::from_slice(&flat, &[batch, max_blocks as i32]),
        lens: Array::from_slice(&lens, &[batch]),
        host_tables,
        num_blocks,
    }
}

/// `dense_attention` of each sequence over its gathered keys and values:
/// `[B, H, D]`, f32.
fn dense_oracle(c: &GpuCase, x: &GpuInputs) -> Array {
    let (bs, hkv, d, h) = (c.block_size, c.kv_heads, c.head_dim, c.heads);
    let row = hkv * d;
    let mut out = Vec::new();
    for (i, &ctx) in c.lens.iter().enumerate() {
        let table = &x.host_tables[i];
        let (mut gk, mut gv) = (Vec::new(), Vec::new());
        for t in 0..ctx {
            let o = (table[t / bs].index() * bs + t % bs) * row;
            gk.extend_from_slice(&x.host_k[o..o + row]);
            gv.extend_from_slice(&x.host_v[o..o + row]);
        }
        let q = &x.host_q[i * h * d..(i + 1) * h * d];
        out.extend(dense_attention(q, h, (&gk, &gv), hkv, d));
    }
    Array::from_slice(&out, &[c.lens.len() as i32, h as i32, d as i32])
}

fn run_gpu(x: &GpuInputs, d: usize) -> Array {
    let scale = 1.0 / (d as f32).sqrt();
    ok(
        "paged_attention (GPU)",
        paged_attention_gpu::paged_attention(&x.q, &x.k, &x.v, &x.tables, &x.lens, scale),
    )
}

#[allow(clippy::too_many_arguments)] // one case, field by field
fn case(
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    block_size: usize,
    lens: &[usize],
    shared_prefix: bool,
    q_dtype: Dtype,
    kv_dtype: Dtype,
) -> GpuCase {
    GpuCase {
        heads,
        kv_heads,
        head_dim,
        block_size,
        lens: lens.to_vec(),
        shared_prefix,
        q_dtype,
        kv_dtype,
    }
}

#[test]
fn gpu_paged_attention_matches_dense_over_shuffled_blocks() {
    let test = "gpu_paged_attention_matches_dense_over_shuffled_blocks";
    if !require_gpu(test) {
        return;
    }
    let (f32_, bf16_, f16_) = (Dtype::Float32, Dtype::Bfloat16, Dtype::Float16);
    // Block sizes 1, 3, 5, 8, 16, 32; GQA groups 1, 2, 7, 8; contexts that
    // end inside a block, on its last slot, inside a tile of 32 tokens or
    // past several (the kernel's 4 warps take every 4th tile).
    let cases = [
        case(
            14,
            2,
            64,
            16,
            &[1, 31, 32, 33, 129, 1000],
            false,
            f32_,
            f32_,
        ),
        case(4, 4, 128, 1, &[5, 200], false, f32_, f32_),
        case(8, 1, 32, 3, &[7, 64, 300], true, f32_, f32_),
        case(14, 2, 64, 32, &[17, 513, 2048], true, bf16_, bf16_),
        case(4, 2, 128, 5, &[1, 100], false, bf16_, bf16_),
        case(2, 1, 16, 16, &[48, 4096], false, f16_, f16_),
        case(4, 1, 64, 8, &[77, 8], true, f32_, bf16_),
    ];
    for (i, c) in cases.iter().enumerate() {
        let x = gpu_inputs(c, 160 + 10 * i as u64);
        let got = run_gpu(&x, c.head_dim);
        let want = dense_oracle(c, &x);
        check_gpu(test, "day16", &c.name(), &got, &want, c.q_dtype);
    }
}

#[test]
fn gpu_paged_attention_matches_the_cpu_kernel() {
    let test = "gpu_paged_attention_matches_the_cpu_kernel";
    if !require_gpu(test) {
        return;
    }
    let f32_ = Dtype::Float32;
    let cases = [
        case(4, 2, 64, 16, &[40, 3, 257], true, f32_, f32_),
        case(6, 3, 16, 7, &[50, 1], false, f32_, f32_),
    ];
    for (i, c) in cases.iter().enumerate() {
        let x = gpu_inputs(c, 260 + 10 * i as u64);
        let got = run_gpu(&x, c.head_dim);
        let kv = PagedKv {
            keys: &x.host_k,
            values: &x.host_v,
            num_blocks: x.num_blocks,
            block_size: c.block_size,
            num_kv_heads: c.kv_heads,
            head_dim: c.head_dim,
        };
        let (h, d) = (c.heads, c.head_dim);
        let scale = 1.0 / (d as f32).sqrt();
        let mut want = Vec::new();
        for (s, &ctx) in c.lens.iter().enumerate() {
            let q = &x.host_q[s * h * d..(s + 1) * h * d];
            let table = &x.host_tables[s];
            want.extend(ok(
                "paged_attention (CPU)",
                paged_attention(q, h, &kv, table, ctx, scale),
            ));
        }
        let want = Array::from_slice(&want, &[c.lens.len() as i32, h as i32, d as i32]);
        check_gpu(test, "day16", &c.name(), &got, &want, c.q_dtype);
    }
}

#[test]
fn gpu_paged_attention_rejects_bad_input() {
    let call = "paged_attention (GPU)";
    let q = seeded(&[2, 4, 16], 1, 1.0);
    let pool = seeded(&[4, 4, 2, 16], 2, 1.0);
    let tables = Array::from_slice(&[0i32, 1, 2, 3], &[2, 2]);
    let lens = Array::from_slice(&[5i32, 8], &[2]);
    let f = |q: &Array, k: &Array, v: &Array, t: &Array, l: &Array| {
        paged_attention_gpu::paged_attention(q, k, v, t, l, 0.25)
    };
    let r = f(&seeded(&[4, 16], 1, 1.0), &pool, &pool, &tables, &lens);
    should_fail_naming(call, "query of rank 2", r, &["query", "[B, H, D]"]);
    let r = f(&q, &seeded(&[4, 4, 2, 8], 2, 1.0), &pool, &tables, &lens);
    should_fail_naming(
        call,
        "key_pool with D = 8 for D = 16",
        r,
        &["key_pool", "16"],
    );
    let r = f(&q, &pool, &seeded(&[3, 4, 2, 16], 2, 1.0), &tables, &lens);
    should_fail_naming(call, "value_pool of 3 blocks", r, &["value_pool"]);
    let r = f(
        &q,
        &pool,
        &pool,
        &Array::from_slice(&[0i32, 1], &[1, 2]),
        &lens,
    );
    should_fail_naming(
        call,
        "block_tables of 1 row for B = 2",
        r,
        &["block_tables"],
    );
    let r = f(&q, &pool, &pool, &tables, &Array::from_slice(&[5i32], &[1]));
    should_fail_naming(call, "context_lens of 1 for B = 2", r, &["context_lens"]);
    let r = f(&q, &pool, &pool, &cast_to(&tables, Dtype::Float32), &lens);
    should_fail_naming(call, "float block_tables", r, &["block_tables", "int32"]);
    let r = f(&cast_to(&q, Dtype::Int32), &pool, &pool, &tables, &lens);
    should_fail_naming(call, "int32 query", r, &["query", "float"]);
    let r = f(&seeded(&[2, 3, 16], 1, 1.0), &pool, &pool, &tables, &lens);
    should_fail_naming(call, "H = 3 over H_kv = 2", r, &["key_pool", "H = 3"]);
    let r = f(
        &q,
        &pool,
        &pool,
        &tables,
        &Array::from_slice(&[5i32, 0], &[2]),
    );
    should_fail_naming(call, "context 0", r, &["context_lens[1]", "0"]);
    let r = f(
        &q,
        &pool,
        &pool,
        &tables,
        &Array::from_slice(&[9i32, 8], &[2]),
    );
    should_fail_naming(
        call,
        "9 tokens in 2 blocks of 4",
        r,
        &["context_lens[0]", "9", "8"],
    );
    let bad = Array::from_slice(&[0i32, 1, 2, 7], &[2, 2]);
    let r = f(&q, &pool, &pool, &bad, &lens);
    should_fail_naming(
        call,
        "block 7 of a pool of 4",
        r,
        &["block_tables[1][1]", "7", "4"],
    );
    // Entries past a context are not read: -1 there is fine (checked on a
    // GPU by the tests above), so only a CPU machine's error remains here.
    let wide = seeded(&[1, 1, 512], 3, 1.0);
    let wide_pool = seeded(&[1, 1, 1, 512], 4, 1.0);
    let r = f(
        &wide,
        &wide_pool,
        &wide_pool,
        &Array::from_slice(&[0i32], &[1, 1]),
        &Array::from_slice(&[1i32], &[1]),
    );
    should_fail_naming(call, "D = 512", r, &["256"]);
}

/// Without a GPU a valid call is an error that says so (no crash, no MLX
/// abort); on a machine with a GPU the numeric tests above cover it.
#[test]
fn gpu_paged_attention_without_a_gpu_says_so() {
    if tiny_llm_common::gpu::gpu_available() {
        skip("a GPU is usable here: this test checks the error of a machine without one");
        return;
    }
    let q = seeded(&[1, 2, 16], 3, 1.0);
    let pool = seeded(&[2, 4, 1, 16], 4, 1.0);
    should_fail_naming(
        "paged_attention (GPU, no GPU)",
        "a valid call on a machine without a CUDA GPU",
        paged_attention_gpu::paged_attention(
            &q,
            &pool,
            &pool,
            &Array::from_slice(&[1i32, 0], &[1, 2]),
            &Array::from_slice(&[6i32], &[1]),
            0.25,
        ),
        &["GPU"],
    );
}
