//! Day 17: prefix caching over the block pool (plain data, no MLX).
//!
//! The chain hash against 64-bit FNV-1a written here from its definition
//! (offset basis 0xcbf29ce484222325, prime 0x100000001b3, over the
//! little-endian bytes the contract names). Scripted workloads with hit
//! counts worked out by hand: a 500-token system prompt shared by 16
//! requests is computed once (its 31 full blocks of 16), LRU order of
//! eviction, a block in use is never evicted. A property over random
//! workloads with a small pool: the pool's invariants hold (each block's
//! count = the tables holding it + 1 when cached), and a prefix served from
//! the cache holds exactly the tokens of the prompt it was looked up for
//! (read back through a simulated KV storage).
//!
//! Then the week-3 engine (given) with the learner's prefix cache on the
//! tiny Qwen2: tokens computed and blocks found worked out by hand, and
//! every request's greedy tokens equal to the request alone with no cache
//! (day 8's cached forward pass), also while a small pool evicts.

use proptest::prelude::*;
use std::collections::HashSet;
use tiny_llm_common::engine::{self, BatchedLm, EngineConfig, EngineStats, Event, RequestStats};
use tiny_llm_common::Error;
use tiny_llm_grader::imp::batch_kv_cache::BatchKvCache;
use tiny_llm_grader::imp::block_pool::{BlockAllocator, BlockId, BlockPool, BlockTable};
use tiny_llm_grader::imp::prefix_cache::{
    block_hashes, chain_hash, PooledPrefixCache, PrefixCache,
};
use tiny_llm_grader::imp::scheduler::{FcfsScheduler, SchedulerConfig};
use tiny_llm_grader::prop::check as check_property;
use tiny_llm_grader::tiny_engine::{drain, prompt, request, solo, tiny_model};
use tiny_llm_grader::{ok, should_fail};

/// 64-bit FNV-1a from its definition.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[test]
fn chain_hash_is_fnv1a_over_little_endian_bytes() {
    let first = fnv1a(&[1, 0, 0, 0, 0x34, 0x12, 0, 0]);
    assert_eq!(
        chain_hash(None, &[1, 0x1234]),
        first,
        "[wrong numbers] first block"
    );
    let mut bytes = first.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[7, 0, 0, 0]);
    assert_eq!(
        chain_hash(Some(first), &[7]),
        fnv1a(&bytes),
        "[wrong numbers] a block after another: the previous hash's 8 bytes, then the tokens"
    );
    // the same block after another prefix hashes differently
    let a = block_hashes(&[1, 2, 3, 4, 5, 6], 2);
    let b = block_hashes(&[9, 2, 3, 4, 5, 6, 7], 2);
    assert_eq!(a.len(), 3, "[wrong numbers] 6 tokens in blocks of 2");
    assert_eq!(b.len(), 3, "[wrong numbers] a partial block has no hash");
    assert_eq!(a[0], chain_hash(None, &[1, 2]));
    assert_eq!(a[1], chain_hash(Some(a[0]), &[3, 4]));
    assert!(
        a.iter().zip(&b).all(|(x, y)| x != y),
        "[wrong numbers] the chain must differ"
    );
}

/// Appends `tokens` to `table`, evicting cached blocks when the pool is
/// empty; writes each token into `storage` (copying on copy-on-write).
fn append(
    pool: &mut BlockPool,
    cache: &mut PrefixCache,
    table: &mut BlockTable,
    tokens: &[u32],
    storage: &mut [Vec<Option<u32>>],
) -> Result<(), Error> {
    for &t in tokens {
        let s = loop {
            match pool.append_token(table) {
                Ok(s) => break s,
                Err(Error::OutOfBlocks { .. }) if ok("evict", cache.evict(pool, 1)) == 1 => {}
                Err(e) => return Err(e),
            }
        };
        if let Some(c) = s.copy {
            storage[c.dst.index()] = storage[c.src.index()].clone();
        }
        storage[s.block.index()][s.offset] = Some(t);
    }
    Ok(())
}

/// Serves one prompt: the cached prefix, the rest computed. Returns the
/// table and the tokens computed.
fn serve(
    pool: &mut BlockPool,
    cache: &mut PrefixCache,
    prompt: &[u32],
    storage: &mut [Vec<Option<u32>>],
) -> Result<(BlockTable, usize), Error> {
    let mut table = ok("lookup", cache.lookup(pool, prompt));
    let hit = table.num_tokens;
    append(pool, cache, &mut table, &prompt[hit..], storage)?;
    ok("insert", cache.insert(pool, prompt, &table));
    Ok((table, prompt.len() - hit))
}

#[test]
fn shared_system_prompt_is_computed_once() {
    // 16 requests: the same 500-token system prompt, then 12 tokens of their
    // own (512 tokens, 32 blocks of 16). Blocks 0..31 (tokens 0..496) are
    // the system prompt's alone; block 31 mixes its last 4 tokens with the
    // request's own, so it is never shared.
    let bs = 16;
    let mut pool = ok("BlockPool::new", BlockPool::new(256, bs));
    let mut cache = PrefixCache::new();
    let mut storage = vec![vec![None; bs]; 256];
    let system: Vec<u32> = (0..500).map(|i| 1000 + i).collect();
    let mut computed = 0;
    let mut tables = Vec::new();
    for r in 0..16u32 {
        let mut prompt = system.clone();
        prompt.extend((0..12).map(|i| 50_000 + 100 * r + i));
        let (table, c) = ok("serve", serve(&mut pool, &mut cache, &prompt, &mut storage));
        computed += c;
        tables.push(table);
    }
    let st = cache.stats();
    assert_eq!(st.lookups, 16, "[wrong numbers] lookups");
    assert_eq!(
        st.hit_blocks,
        15 * 31,
        "[wrong numbers] hit blocks: 31 for each request after the first"
    );
    assert_eq!(st.hit_tokens, 15 * 31 * 16, "[wrong numbers] hit tokens");
    assert_eq!(
        computed,
        512 + 15 * 16,
        "[wrong numbers] tokens computed: all 512 of the first request, 16 of each other"
    );
    assert!(
        16 * 512 >= 10 * computed,
        "prefill work must fall 10x or more"
    );
    // 31 shared blocks + 16 blocks of each request's own (the first's 32nd too)
    assert_eq!(pool.num_used(), 31 + 16, "[wrong numbers] blocks in use");
    let first_block = tables[0].blocks[0];
    assert_eq!(
        pool.ref_count(first_block),
        16 + 1,
        "[wrong numbers] the first system block: 16 tables and the cache hold it"
    );
    for mut t in tables {
        ok("free_table", pool.free_table(&mut t));
    }
    // the cache still holds every full block it saw: 31 + 16 of their own
    assert_eq!(cache.len(), 31 + 16, "[wrong numbers] blocks cached");
    assert_eq!(
        pool.num_used(),
        cache.len(),
        "[wrong numbers] only the cache holds blocks"
    );
}

#[test]
fn lookup_leaves_one_token_to_compute() {
    let mut pool = ok("BlockPool::new", BlockPool::new(8, 2));
    let mut cache = PrefixCache::new();
    let mut storage = vec![vec![None; 2]; 8];
    let (mut t, c) = ok(
        "serve",
        serve(&mut pool, &mut cache, &[1, 2, 3, 4], &mut storage),
    );
    assert_eq!(c, 4);
    ok("free_table", pool.free_table(&mut t));
    // the same 4 tokens again: only the first block may be reused (3 tokens max)
    let hit = ok("lookup", cache.lookup(&mut pool, &[1, 2, 3, 4]));
    assert_eq!(
        hit.num_tokens, 2,
        "[wrong numbers] a lookup must leave one token to compute"
    );
    should_fail("lookup", "empty prompt", cache.lookup(&mut pool, &[]));
}

#[test]
fn lru_evicts_the_least_recently_used_unused_block() {
    let mut pool = ok("BlockPool::new", BlockPool::new(6, 2));
    let mut cache = PrefixCache::new();
    let mut storage = vec![vec![None; 2]; 6];
    let a = [1, 2, 3, 4, 9];
    let b = [5, 6, 9];
    let ha = block_hashes(&a, 2);
    let hb = block_hashes(&b, 2);
    for p in [&a[..], &b[..]] {
        let (mut t, _) = ok("serve", serve(&mut pool, &mut cache, p, &mut storage));
        ok("free_table", pool.free_table(&mut t));
    }
    // A used again after B: B's block is now the least recently used
    let mut t = ok("lookup", cache.lookup(&mut pool, &a));
    assert_eq!(t.num_tokens, 4, "[wrong numbers] A's two blocks are cached");
    ok("free_table", pool.free_table(&mut t));
    let order = cache.evictable(&pool);
    let want = vec![
        cache.get(hb[0]).unwrap(),
        cache.get(ha[1]).unwrap(),
        cache.get(ha[0]).unwrap(),
    ];
    assert_eq!(
        order, want,
        "[wrong numbers] eviction order: B's block, then A's tail, then A's head"
    );
    assert_eq!(ok("evict", cache.evict(&mut pool, 1)), 1);
    assert_eq!(
        cache.get(hb[0]),
        None,
        "[wrong numbers] B's block should be evicted first"
    );
    assert!(cache.get(ha[0]).is_some() && cache.get(ha[1]).is_some());
    assert_eq!(ok("evict", cache.evict(&mut pool, 1)), 1);
    assert_eq!(cache.get(ha[1]), None, "[wrong numbers] then A's tail");
    assert_eq!(cache.stats().evicted, 2);
}

#[test]
fn eviction_never_touches_a_block_in_use() {
    let mut pool = ok("BlockPool::new", BlockPool::new(4, 2));
    let mut cache = PrefixCache::new();
    let mut storage = vec![vec![None; 2]; 4];
    let (mut t, _) = ok(
        "serve",
        serve(&mut pool, &mut cache, &[1, 2, 3], &mut storage),
    );
    ok("free_table", pool.free_table(&mut t));
    // a sequence uses block [1, 2] (count 2): it stays however much we ask
    let in_use = ok("lookup", cache.lookup(&mut pool, &[1, 2, 7]));
    let blk = in_use.blocks[0];
    assert_eq!(pool.ref_count(blk), 2);
    assert_eq!(
        ok("evict", cache.evict(&mut pool, 10)),
        0,
        "[wrong numbers] the only cached block is in use"
    );
    assert_eq!(
        pool.ref_count(blk),
        2,
        "[wrong numbers] evict changed a block in use"
    );
    // allocate: 3 blocks free, then out of blocks (nothing evictable)
    for _ in 0..3 {
        ok("allocate", cache.allocate(&mut pool));
    }
    let e = should_fail("allocate", "all in use", cache.allocate(&mut pool));
    assert!(
        matches!(e, Error::OutOfBlocks { .. }),
        "[wrong numbers] {e:?}"
    );
}

#[test]
fn allocate_evicts_when_the_pool_is_full() {
    let mut pool = ok("BlockPool::new", BlockPool::new(2, 2));
    let mut cache = PrefixCache::new();
    let mut storage = vec![vec![None; 2]; 2];
    let (mut t, _) = ok(
        "serve",
        serve(&mut pool, &mut cache, &[1, 2, 3, 4], &mut storage),
    );
    ok("free_table", pool.free_table(&mut t));
    assert_eq!(pool.num_free(), 0, "[wrong numbers] both blocks cached");
    let got = ok("allocate", cache.allocate(&mut pool));
    assert_eq!(cache.len(), 1, "[wrong numbers] one block evicted");
    assert_eq!(pool.ref_count(got), 1);
    // the tail [3, 4] went first; [1, 2] is still cached
    assert!(cache.get(chain_hash(None, &[1, 2])).is_some());
}

#[test]
fn prop_random_workloads_keep_the_pool_consistent() {
    // Prompts from 3 prefixes with random tails; up to 4 live sequences;
    // the pool is small, so eviction and out-of-blocks happen.
    let workload = (
        1usize..4,
        4usize..24,
        prop::collection::vec((0usize..3, 1usize..12, any::<bool>()), 1..40),
    );
    let (evicted, hits) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    check_property(
        "prop_random_workloads_keep_the_pool_consistent",
        256,
        workload,
        |(bs, num_blocks, reqs)| {
            let mut pool = ok("BlockPool::new", BlockPool::new(num_blocks, bs));
            let mut cache = PrefixCache::new();
            let mut storage = vec![vec![None; bs]; num_blocks];
            let mut live: Vec<(BlockTable, Vec<u32>)> = Vec::new();
            let mut hashes_seen = HashSet::new();
            for (i, (prefix, tail, keep)) in reqs.into_iter().enumerate() {
                let mut prompt: Vec<u32> = (0..10).map(|j| 100 * prefix as u32 + j).collect();
                prompt.extend((0..tail as u32).map(|j| 10_000 + 100 * i as u32 + j));
                let mut table = ok("lookup", cache.lookup(&mut pool, &prompt));
                // the cached prefix holds the prompt's tokens
                for (t, &tok) in prompt.iter().enumerate().take(table.num_tokens) {
                    let (blk, off) = table.slot_of(t, bs).unwrap();
                    prop_assert_eq!(
                        storage[blk.index()][off],
                        Some(tok),
                        "token {} of a cached prefix is not the prompt's",
                        t
                    );
                }
                let hit = table.num_tokens;
                match append(
                    &mut pool,
                    &mut cache,
                    &mut table,
                    &prompt[hit..],
                    &mut storage,
                ) {
                    Ok(()) => {
                        ok("insert", cache.insert(&mut pool, &prompt, &table));
                        hashes_seen.extend(block_hashes(&prompt, bs));
                        live.push((table, prompt));
                    }
                    Err(Error::OutOfBlocks { .. }) => {
                        // give up this request: free what it holds
                        ok("free_table", pool.free_table(&mut table));
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("append: {e}"))),
                }
                if !keep || live.len() > 4 {
                    if let Some((mut t, _)) = (!live.is_empty()).then(|| live.remove(0)) {
                        ok("free_table", pool.free_table(&mut t));
                    }
                }
                // invariants: counts = tables + cache; free list = count 0
                let mut holders = vec![0usize; num_blocks];
                for (t, _) in &live {
                    for b in &t.blocks {
                        holders[b.index()] += 1;
                    }
                }
                let cached: HashSet<BlockId> =
                    hashes_seen.iter().filter_map(|&h| cache.get(h)).collect();
                prop_assert_eq!(
                    cached.len(),
                    cache.len(),
                    "a block cached twice, or unknown"
                );
                for &b in &cached {
                    holders[b.index()] += 1;
                }
                let free: HashSet<BlockId> = pool.free_list().into_iter().collect();
                prop_assert_eq!(
                    free.len(),
                    pool.num_free(),
                    "a block twice on the free list"
                );
                prop_assert_eq!(pool.num_free() + pool.num_used(), num_blocks);
                for (j, &h) in holders.iter().enumerate() {
                    let b = BlockId(j as u32);
                    prop_assert_eq!(pool.ref_count(b), h, "{} count vs its holders", b);
                    prop_assert_eq!(free.contains(&b), h == 0, "{} free while held", b);
                }
                // live tables still read back their prompts
                for (t, p) in &live {
                    for (k, &tok) in p.iter().enumerate() {
                        let (blk, off) = t.slot_of(k, bs).unwrap();
                        prop_assert_eq!(
                            storage[blk.index()][off],
                            Some(tok),
                            "a live block was overwritten"
                        );
                    }
                }
            }
            evicted.set(evicted.get() + cache.stats().evicted);
            hits.set(hits.get() + cache.stats().hit_blocks);
            Ok(())
        },
    );
    assert!(
        evicted.get() > 0 && hits.get() > 0,
        "[wrong numbers] the cases evicted {} blocks and hit {}: expected both to happen",
        evicted.get(),
        hits.get()
    );
}

// ---- the week-3 engine with the prefix cache, on the tiny Qwen2 -----------

/// An engine over the tiny Qwen2 (the learner's scheduler with
/// `sched_blocks` KV blocks, batch cache, and prefix cache over a pool of
/// `cache_blocks` blocks; blocks of 4 tokens).
fn tiny_engine(running: usize, cache_blocks: usize, sched_blocks: usize) -> engine::EngineHandle {
    let sched = SchedulerConfig {
        max_tokens_per_step: 16,
        max_running: running,
        block_size: 4,
        num_blocks: sched_blocks,
    };
    let config = EngineConfig {
        eos: vec![],
        block_size: 4,
        num_blocks: sched_blocks,
    };
    let spawned = engine::spawn_with_prefix_cache(
        config,
        move || Ok(BatchedLm::<_, BatchKvCache>::new(tiny_model())),
        move || FcfsScheduler::new(sched),
        move || PooledPrefixCache::new(cache_blocks, 4),
    );
    ok("engine::spawn_with_prefix_cache", spawned)
}

/// Runs `prompts` one after the other (each submitted when the one before
/// is done) and returns each one's tokens and stats, then the engine's.
fn one_by_one(
    h: engine::EngineHandle,
    prompts: &[Vec<u32>],
    n: usize,
) -> (Vec<(Vec<u32>, RequestStats)>, EngineStats) {
    let mut out = Vec::new();
    for p in prompts {
        let (_, rx) = h.submit(request(p, n));
        match drain(&rx) {
            Some((toks, Event::Done { stats, .. })) => out.push((toks, stats)),
            Some((_, other)) => {
                h.shutdown().ok();
                panic!("[error] a request ended with {other:?}");
            }
            None => {
                h.shutdown().ok();
                panic!("the engine ended a stream without Done");
            }
        }
    }
    (out, ok("shutdown", h.shutdown()))
}

/// Worked by hand, blocks of 4: a 13-token shared prefix plus 3 tokens of
/// each request's own. The first request finds nothing (3 blocks looked
/// up: a lookup covers at most 15 of 16 tokens) and computes 16; its 4 full
/// blocks are cached. The second (another suffix) finds the 3 blocks of
/// tokens 0..12 (block 3 holds token 12 and the first one's suffix) and
/// computes 4; the third repeats the first prompt and also finds 3 (one
/// token is always left to compute), computing 4. Every request's tokens
/// equal the request alone with no cache.
#[test]
fn engine_prefix_cache_computes_a_shared_prefix_once_tiny() {
    let model = tiny_model();
    let shared = prompt(1, 13);
    let with = |s: u32| -> Vec<u32> {
        let mut p = shared.clone();
        p.extend((0..3).map(|j| 900 + s * 3 + j));
        p
    };
    let prompts = vec![with(0), with(1), with(0)];
    let want: Vec<Vec<u32>> = prompts.iter().map(|p| solo(&model, p, 5)).collect();
    let (got, stats) = one_by_one(tiny_engine(2, 64, 1024), &prompts, 5);
    for (i, ((toks, _), want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            toks, want,
            "[wrong numbers] request {i}: tokens with the prefix cache differ from the request \
             alone"
        );
    }
    let computed: Vec<usize> = got.iter().map(|(_, s)| s.prefill_tokens_computed).collect();
    let cached: Vec<usize> = got.iter().map(|(_, s)| s.cached_tokens).collect();
    assert_eq!(
        (computed, cached),
        (vec![16, 4, 4], vec![0, 12, 12]),
        "[wrong numbers] (prompt tokens computed, tokens found in the cache) per request"
    );
    assert_eq!(
        (
            stats.prefix_cache_lookup_blocks,
            stats.prefix_cache_hit_blocks,
            stats.prefill_tokens_computed
        ),
        (9, 6, 24),
        "[wrong numbers] (blocks looked up, blocks found, prompt tokens computed)"
    );
    assert_eq!(stats.kv_blocks_in_use_end, 0);
}

/// Requests sharing a prefix, four in flight at once; then with a
/// prefix-cache pool of 6 blocks (too small for every prompt's blocks:
/// least recently used blocks are evicted while others are in use); then
/// with 14 KV blocks for the running sequences (the scheduler preempts, and
/// a preempted sequence starts again from its cached blocks): every request
/// gets the tokens it gets alone, and later requests reuse blocks.
#[test]
fn engine_prefix_cache_concurrent_and_evicting_matches_alone_tiny() {
    let model = tiny_model();
    let shared = prompt(2, 10);
    let prompts: Vec<Vec<u32>> = (0..8u32)
        .map(|i| {
            let mut p = shared.clone();
            p.extend(prompt(10 + i, 3 + (i as usize % 4) * 2));
            p
        })
        .collect();
    let want: Vec<Vec<u32>> = prompts.iter().map(|p| solo(&model, p, 6)).collect();
    for (cache_blocks, sched_blocks) in [(64, 1024), (6, 1024), (64, 14)] {
        let h = tiny_engine(4, cache_blocks, sched_blocks);
        let rxs: Vec<_> = prompts.iter().map(|p| h.submit(request(p, 6)).1).collect();
        let mut got = Vec::new();
        for rx in &rxs {
            match drain(rx) {
                Some((toks, Event::Done { .. })) => got.push(toks),
                Some((_, other)) => {
                    h.shutdown().ok();
                    panic!("[error] a request ended with {other:?} (pool of {cache_blocks})");
                }
                None => {
                    h.shutdown().ok();
                    panic!("the engine ended a stream without Done");
                }
            }
        }
        let stats = ok("shutdown", h.shutdown());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g, w,
                "[wrong numbers] request {i}, prefix-cache pool of {cache_blocks} blocks: tokens \
                 differ from the request alone"
            );
        }
        assert!(
            stats.prefix_cache_hit_blocks > 0,
            "[wrong numbers] no request reused a cached block (pool of {cache_blocks})"
        );
        assert!(
            stats.prefix_cache_blocks_stored <= cache_blocks as u64,
            "[wrong numbers] {} blocks stored, pool of {cache_blocks}",
            stats.prefix_cache_blocks_stored
        );
        assert_eq!(stats.kv_blocks_in_use_end, 0);
        if sched_blocks < 1024 {
            assert!(
                stats.preemptions > 0,
                "[wrong numbers] {sched_blocks} KV blocks for 4 running sequences of up to 7 \
                 blocks, yet no sequence was preempted"
            );
        }
    }
}
