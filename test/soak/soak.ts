/**
 * `make soak`: the service as its own process under sustained load for a
 * bounded time (SOAK_SECONDS, default 120, clamped to 10..900).
 *
 * First a short closed-loop probe (PROBE_SECONDS of cached Checks, as fast as
 * they come back) measures the most Checks/s this machine gets through; the
 * soak then sends Checks open-loop, at a fixed rate of 70% of that, whatever
 * the answers' speed: a mix of cached, new, inactive tokens at a steady
 * endpoint, and new tokens at a faulty one that flaps (up for a while, then
 * resetting or refusing connections) and answers 5% of requests with a 500
 * while up.
 *
 * Reports memory over time and checks: no failed RPC, no allow without an
 * active answer from an endpoint, the service's own decision counts equal the
 * client's, the faulty endpoint's breaker opened and closed again, and no
 * heap growth trend after warm-up. The trend is read from the heap left after
 * full GCs: the heap sampled from /metrics is a saw tooth between collections,
 * far too noisy for it, and at a low rate a full GC may not come for many
 * seconds. So the service runs with --trace-gc, and a one-line --import makes
 * it collect fully every FORCED_GC_EVERY_MS (a few ms of pause each; the only
 * difference from a plain `node dist/src/main.js`). Exits 1 when a check
 * fails. Not part of `make test`: it takes minutes and its figures depend on
 * the machine.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { status as grpcStatus } from '@grpc/grpc-js';
import { connectEnvoy, summarize, type EnvoyClient } from '../support/envoy.js';
import { startFakeAuthorizationServer, type FakeAuthorizationServer, type FakeHandler } from '../support/fake-authorization-server.js';
import { cleanEnv, httpGet, samples } from '../support/service-process.js';

const SECONDS = Math.min(Math.max(Number(process.env.SOAK_SECONDS ?? 120) || 120, 10), 900);
const PROBE_SECONDS = 5;
const PROBE_CONCURRENCY = 32;
/** Share of the probed rate the soak runs at: busy, with headroom for the uncached paths. */
const LOAD_SHARE = 0.7;
/** Open loop: Checks sent but not yet answered beyond this are not sent (counted as skipped), so a stall cannot exhaust memory. */
const MAX_OUTSTANDING = 2000;
const DEADLINE_MS = 2000;
/** About 40 memory samples whatever the length, 1 to 5 s apart. */
const SAMPLE_EVERY_MS = Math.min(Math.max(Math.round((SECONDS * 1000) / 40), 1000), 5000);
/** Samples before this are warm-up (caches filling, code compiling); the trend is read after it. */
const WARM_UP_MS = Math.max(10_000, SECONDS * 250);
/** The faulty endpoint: up, then down, in turn (down alternates between reset and refused connections). */
const FLAP_UP_MS = 8000;
const FLAP_DOWN_MS = 4000;
const FLAKY_RESET_TIMEOUT_MS = 2000;
/** A full GC of the service this often, so that its live heap is known whatever the load. */
const FORCED_GC_EVERY_MS = 2000;
/** A heap trend is "clear" when the late median (after full GCs) exceeds the early one by more than both of these. */
const TREND_TOLERANCE = { ratio: 0.2, mib: 8 };
// (relative to dist/test/soak: the compiled service)
const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'main.js');

type Kind = 'cached' | 'new' | 'inactive' | 'faulty';
const KINDS: Array<[Kind, number]> = [
  ['cached', 0.6],
  ['new', 0.15],
  ['inactive', 0.15],
  ['faulty', 0.1],
];

function pick(): Kind {
  let r = Math.random();
  for (const [kind, share] of KINDS) {
    if ((r -= share) < 0) return kind;
  }
  return 'cached';
}

const token = (prefix: string) => `${prefix}${randomBytes(24).toString('base64url')}`;

async function scrape(opsPort: number): Promise<Map<string, number>> {
  const { status, body } = await httpGet(opsPort, '/metrics', 5000);
  if (status !== 200) throw new Error(`/metrics answered ${status}`);
  return samples(body);
}

function sum(metrics: Map<string, number>, prefix: string, label: string): number {
  let total = 0;
  for (const [name, value] of metrics) if (name.startsWith(prefix) && name.includes(label)) total += value;
  return total;
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** V8's --trace-gc line for a full collection: the heap before and after, in MiB (V8 prints them as "MB"). */
const FULL_GC = /Mark-Compact(?: \(reduce\))? [\d.]+ \([\d.]+\) -> ([\d.]+) \(/;

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/**
 * Tokens starting with "ok" are active, any other inactive. Every active
 * answer's token is noted first: an allow of a token not in `answeredActive`
 * is one no endpoint vouched for.
 */
function answering(answeredActive: Set<string>, fault: () => boolean = () => false): FakeHandler {
  return (req) => {
    const t = req.body.get('token') ?? '';
    if (fault()) return { status: 500, body: 'boom' };
    if (!t.startsWith('ok')) return { json: { active: false } };
    answeredActive.add(t);
    return { json: { active: true, sub: `user-${t.slice(2, 8)}`, scope: 'read', exp: Math.floor(Date.now() / 1000) + 3600 } };
  };
}

/** Flap `fake` until `stopAt`: up FLAP_UP_MS, down FLAP_DOWN_MS; returns when it is up for good. */
async function flap(fake: FakeAuthorizationServer, stopAt: number, downPhases: Array<[number, number]>): Promise<void> {
  for (let cycle = 0; ; cycle += 1) {
    await sleep(Math.min(FLAP_UP_MS, Math.max(0, stopAt - Date.now())));
    if (Date.now() >= stopAt) break;
    const from = Date.now();
    await fake.setAvailability(cycle % 2 === 0 ? 'reset' : 'refuse');
    await sleep(Math.min(FLAP_DOWN_MS, Math.max(0, stopAt - Date.now())));
    await fake.setAvailability('up');
    downPhases.push([from, Date.now()]);
    if (Date.now() >= stopAt) break;
  }
}

interface Counts {
  allow: number;
  deny: number;
  rpcErrors: number;
  wrongAllows: number;
}

async function main(): Promise<number> {
  const answeredActive = new Set<string>();
  const steady = await startFakeAuthorizationServer(answering(answeredActive));
  const flaky = await startFakeAuthorizationServer(answering(answeredActive, () => Math.random() < 0.05));
  const dir = mkdtempSync(join(tmpdir(), 'authz-soak-'));
  const config = join(dir, 'config.yaml');
  writeFileSync(
    config,
    [
      'server:',
      '  grpc: { host: 127.0.0.1, port: 0 }',
      '  ops: { host: 127.0.0.1, port: 0 }',
      'log: { level: info, decisions: none }',
      // Small enough to be full early in the run: a cache still filling up would read as a heap trend.
      'cache: { maxCacheEntries: 2000, validatedTokenTTL: 600, negativeTTL: 10, maxNegativeEntries: 1000 }',
      'endpoints:',
      // authenticationTimeout well inside the Checks' deadline, as a deployment sets it against Envoy's timeout.
      `  - { name: idp, url: "${steady.url}", authMethod: none, retries: 0, authenticationTimeout: 1000 }`,
      `  - name: flaky`,
      `    url: "${flaky.url}"`,
      '    authMethod: none',
      '    authenticationTimeout: 1000',
      `    circuitBreaker: { failures: 5, resetTimeout: ${FLAKY_RESET_TIMEOUT_MS} }`,
      'policies:',
      '  - { name: main, endpoint: idp }',
      '  - { name: flaky, endpoint: flaky }',
      'defaultPolicy: main',
      '',
    ].join('\n'),
  );
  const forcedGc = `data:text/javascript,setInterval(() => globalThis.gc(), ${FORCED_GC_EVERY_MS}).unref();`;
  const child = spawn(process.execPath, ['--trace-gc', '--expose-gc', '--import', forcedGc, MAIN, '--config', config], {
    env: cleanEnv(),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let failed = 0;
  let envoy: EnvoyClient | undefined;
  /** The heap after each full GC of the service, with when it was seen (ms since the epoch). */
  const fullGcs: Array<{ at: number; heapMiB: number }> = [];
  try {
    const ports = await new Promise<{ grpcPort: number; opsPort: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the service did not start within 10 s')), 10_000);
      child.once('exit', (code) => reject(new Error(`the service exited (${code})`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const gc = FULL_GC.exec(line);
        if (gc) fullGcs.push({ at: Date.now(), heapMiB: Number(gc[1]) });
        if (!line.includes('"serving"')) return;
        clearTimeout(timer);
        resolve(JSON.parse(line) as { grpcPort: number; opsPort: number });
      });
    });
    const client = connectEnvoy(`127.0.0.1:${ports.grpcPort}`);
    envoy = client;
    const cached = Array.from({ length: 200 }, () => token('ok'));
    const counts: Counts = { allow: 0, deny: 0, rpcErrors: 0, wrongAllows: 0 };
    const byKind = new Map<Kind, { allow: number; deny: number }>(KINDS.map(([kind]) => [kind, { allow: 0, deny: 0 }]));
    let latencies = new Float64Array(1 << 16);
    let answered = 0;
    /** Failed RPCs by gRPC status, kind of token and second of the soak: what failed, and when. */
    const rpcFailures = new Map<string, number>();
    /** The first failure's details for each gRPC status (grpc-js's text: never the request). */
    const failureDetails = new Map<string, string>();
    const failedAt: number[] = [];
    /** Since the last memory sample: the slowest answer, and failures. */
    let window = { slowestMs: 0, failed: 0 };
    let soakStarted = Infinity;

    /** One Check, counted; never throws. Whether it was allowed (null: the RPC failed). */
    const checkOne = async (kind: Kind, t: string, timed: boolean): Promise<boolean | null> => {
      const started = performance.now();
      let allowed: boolean | null = null;
      try {
        const response = await client.check({
          headers: { authorization: `Bearer ${t}` },
          timeoutMs: DEADLINE_MS,
          ...(kind === 'faulty' ? { contextExtensions: { policy: 'flaky' } } : {}),
        });
        const s = summarize(response);
        allowed = s.allowed;
        const tally = byKind.get(kind)!;
        if (s.allowed) {
          counts.allow += 1;
          tally.allow += 1;
          if (!answeredActive.has(t)) counts.wrongAllows += 1;
        } else {
          counts.deny += 1;
          tally.deny += 1;
        }
      } catch (error) {
        counts.rpcErrors += 1;
        window.failed += 1;
        const { code, details } = error as { code?: unknown; details?: unknown };
        const name = typeof code === 'number' ? (grpcStatus[code] ?? String(code)) : 'no status';
        if (!failureDetails.has(name)) failureDetails.set(name, String(details).slice(0, 160));
        const what = `${name} (${kind})`;
        rpcFailures.set(what, (rpcFailures.get(what) ?? 0) + 1);
        if (Date.now() >= soakStarted) failedAt.push((Date.now() - soakStarted) / 1000);
      }
      window.slowestMs = Math.max(window.slowestMs, performance.now() - started);
      if (timed) {
        if (answered === latencies.length) {
          const grown = new Float64Array(latencies.length * 2);
          grown.set(latencies);
          latencies = grown;
        }
        latencies[answered++] = performance.now() - started;
      }
      return allowed;
    };

    // The cached tokens' first answers, a few at a time with a long deadline: each must be in the cache
    // before the soak, or a busy machine leaves some uncached and their Checks measure the endpoint instead.
    for (let i = 0; i < cached.length; i += 10) {
      const batch = cached.slice(i, i + 10);
      const answers = await Promise.all(batch.map((t) => client.check({ headers: { authorization: `Bearer ${t}` }, timeoutMs: 30_000 })));
      if (!answers.every((a) => summarize(a).allowed)) throw new Error('a token to be cached was not allowed');
      counts.allow += batch.length;
    }
    // Calibration: the cached path, closed loop (each worker sends its next Check when the last is answered).
    const probeStarted = performance.now();
    const probeStop = Date.now() + PROBE_SECONDS * 1000;
    let probed = 0;
    await Promise.all(
      Array.from({ length: PROBE_CONCURRENCY }, async () => {
        while (Date.now() < probeStop) {
          await checkOne('cached', cached[Math.floor(Math.random() * cached.length)]!, false);
          probed += 1;
        }
      }),
    );
    const maxRate = probed / ((performance.now() - probeStarted) / 1000);
    const rate = Math.max(10, Math.round(maxRate * LOAD_SHARE));
    const probeCounts = { ...counts };
    // From here on, the tallies by kind are the soak's alone.
    for (const tally of byKind.values()) Object.assign(tally, { allow: 0, deny: 0 });

    // The soak: open loop at `rate`, whatever the answers' speed.
    const memory: Array<{ t: number; rssMiB: number; heapMiB: number; flakyCircuit: number; slowestMs: number; failed: number; stallMs: number }> = [];
    // This process's own event loop: when it stalls, answers wait unread and the client's deadline timers fire
    // first, so a failed RPC next to a long stall here may be the load generator's, not the service's.
    const stalls = monitorEventLoopDelay({ resolution: 20 });
    stalls.enable();
    const started = Date.now();
    soakStarted = started;
    window = { slowestMs: 0, failed: 0 };
    const stopAt = started + SECONDS * 1000;
    const downPhases: Array<[number, number]> = [];
    const flapping = flap(flaky, stopAt, downPhases);
    const flakyAllows: number[] = [];
    const outstanding = new Set<Promise<void>>();
    let sent = 0;
    let skipped = 0;
    const sender = (async () => {
      for (let now = Date.now(); now < stopAt; now = Date.now()) {
        const due = Math.floor(((now - started) / 1000) * rate);
        while (sent + skipped < due) {
          if (outstanding.size >= MAX_OUTSTANDING) {
            skipped += due - sent - skipped;
            break;
          }
          const kind = pick();
          const t = kind === 'cached' ? cached[Math.floor(Math.random() * cached.length)]! : kind === 'inactive' ? token('bad') : token('ok');
          const p = checkOne(kind, t, true).then((allowed) => {
            if (kind === 'faulty' && allowed) flakyAllows.push(Date.now());
          });
          outstanding.add(p);
          void p.finally(() => outstanding.delete(p));
          sent += 1;
        }
        await sleep(5);
      }
      await Promise.all(outstanding);
    })();
    const sampler = (async () => {
      while (Date.now() < stopAt) {
        const m = await scrape(ports.opsPort);
        memory.push({
          t: (Date.now() - started) / 1000,
          rssMiB: (m.get('process_resident_memory_bytes') ?? 0) / 2 ** 20,
          heapMiB: (m.get('nodejs_heap_size_used_bytes') ?? 0) / 2 ** 20,
          flakyCircuit: m.get('authz_introspection_circuit_state{endpoint="flaky"}') ?? -1,
          ...window,
          stallMs: stalls.max / 1e6,
        });
        window = { slowestMs: 0, failed: 0 };
        stalls.reset();
        await sleep(SAMPLE_EVERY_MS);
      }
    })();
    await Promise.all([sender, sampler, flapping]);
    stalls.disable();
    const elapsed = (Date.now() - started) / 1000;

    const final = await scrape(ports.opsPort);
    const served = { allow: sum(final, 'authz_check_decisions_total{', 'decision="allow"'), deny: sum(final, 'authz_check_decisions_total{', 'decision="deny"') };
    const soak = { allow: counts.allow - probeCounts.allow, deny: counts.deny - probeCounts.deny };
    const total = soak.allow + soak.deny;
    const sorted = latencies.slice(0, answered).sort();

    console.log(`calibration: ${PROBE_SECONDS} s closed loop on the cached path, ${PROBE_CONCURRENCY} concurrent: ${Math.round(maxRate)} Checks/s at most`);
    console.log(`soak: ${SECONDS} s open loop at ${rate} Checks/s (${Math.round(LOAD_SHARE * 100)}% of that): ${sent} sent, ${total} answered (${Math.round(total / elapsed)}/s), ${skipped} skipped (over ${MAX_OUTSTANDING} outstanding)`);
    console.log(`latency: p50 ${percentile(sorted, 0.5).toFixed(1)} ms, p99 ${percentile(sorted, 0.99).toFixed(1)} ms, max ${percentile(sorted, 1).toFixed(1)} ms (deadline ${DEADLINE_MS} ms)`);
    console.log(`by kind: ${[...byKind].map(([kind, c]) => `${kind} ${c.allow}/${c.deny}`).join(', ')} (allow/deny)`);
    const flakyOutcomes = ['active', 'inactive', 'bad_response', 'error', 'timeout', 'circuit_open']
      .map((outcome) => `${outcome} ${final.get(`authz_introspection_requests_total{endpoint="flaky",outcome="${outcome}"}`) ?? 0}`)
      .join(', ');
    const reasons = new Map<string, number>();
    for (const [name, value] of final) {
      const reason = /^authz_check_decisions_total\{decision="deny",reason="([^"]+)"/.exec(name)?.[1];
      if (reason !== undefined) reasons.set(reason, (reasons.get(reason) ?? 0) + value);
    }
    const lookups = ['hit', 'negative_hit', 'miss', 'coalesced'].map((r) => `${r} ${final.get(`authz_cache_lookups_total{result="${r}"}`) ?? 0}`).join(', ');
    console.log(`service (calibration included): denies by reason: ${[...reasons].map(([r, n]) => `${r} ${n}`).join(', ')}; cache lookups: ${lookups}`);
    console.log(`faulty endpoint: ${downPhases.length} down phases of ${FLAP_DOWN_MS / 1000} s every ${(FLAP_UP_MS + FLAP_DOWN_MS) / 1000} s; introspections: ${flakyOutcomes}`);
    console.log(
      'over time: memory (the service\'s /metrics), circuit of the faulty endpoint (0 closed, 1 half-open, 2 open), ' +
        'and since the row before: slowest answer, failed RPCs, longest event-loop stall of this load generator:',
    );
    for (const s of memory) {
      console.log(
        `  t=${s.t.toFixed(0).padStart(4)} s  rss ${s.rssMiB.toFixed(1).padStart(6)} MiB  heap ${s.heapMiB.toFixed(1).padStart(6)} MiB  ` +
          `circuit ${s.flakyCircuit}  slowest answer ${s.slowestMs.toFixed(0).padStart(5)} ms  failed RPCs ${s.failed}  ` +
          `soak process stalled ${s.stallMs.toFixed(0).padStart(4)} ms`,
      );
    }

    const check = (ok: boolean, what: string) => {
      console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
      if (!ok) failed += 1;
    };
    const failureList = [...rpcFailures].map(([what, n]) => `${n} ${what}`).join(', ');
    const when = failedAt.length === 0 ? '' : `; in the soak at t=${failedAt[0]!.toFixed(1)}..${failedAt.at(-1)!.toFixed(1)} s`;
    check(counts.rpcErrors === 0, `failed RPCs: ${counts.rpcErrors} (must be 0)${failureList ? `: ${failureList}${when}` : ''}`);
    for (const [name, details] of failureDetails) console.log(`     first ${name}: ${details}`);
    const stalledWhenFailing = Math.max(0, ...memory.filter((s) => s.failed > 0).map((s) => s.stallMs));
    if (stalledWhenFailing >= DEADLINE_MS / 4) {
      console.log(
        `     note: in the rows with failed RPCs this load generator itself stalled up to ${stalledWhenFailing.toFixed(0)} ms: ` +
          'the machine was starved of CPU (see `uptime`); rerun on a quiet machine before blaming the service',
      );
    }
    check(counts.wrongAllows === 0, `allows without an active answer: ${counts.wrongAllows} (must be 0)`);
    check(
      served.allow === counts.allow && served.deny === counts.deny,
      `service counted allow ${served.allow}/deny ${served.deny}; client counted ${counts.allow}/${counts.deny} (calibration included)`,
    );
    if (downPhases.length === 0) {
      console.log('n/a  breaker of the faulty endpoint: the run was too short for a down phase');
    } else {
      const opened = (final.get('authz_introspection_requests_total{endpoint="flaky",outcome="circuit_open"}') ?? 0) > 0;
      check(opened, 'breaker of the faulty endpoint opened in its down phases');
      const recovered = flakyAllows.some((at) => at > downPhases[0]![1] + FLAKY_RESET_TIMEOUT_MS);
      const upAfterDown = stopAt - downPhases[0]![1] > FLAKY_RESET_TIMEOUT_MS + 1000;
      if (upAfterDown) check(recovered, 'and closed again: allows through it after its first down phase');
      else console.log('n/a  closing again: the run ended too soon after the first down phase');
    }
    // Trend after warm-up: the median heap left by full GCs in the last third of the time against the first third.
    const from = started + WARM_UP_MS;
    const span = (stopAt - from) / 3;
    const afterGc = (lo: number, hi: number) => fullGcs.filter((g) => g.at >= lo && g.at < hi).map((g) => g.heapMiB);
    const early = afterGc(from, from + span);
    const late = afterGc(stopAt - span, stopAt);
    const sampled = (lo: number, hi: number) => memory.filter((s) => s.t * 1000 >= lo && s.t * 1000 < hi).map((s) => s.heapMiB);
    const sampledEarly = sampled(WARM_UP_MS, WARM_UP_MS + span);
    const sampledLate = sampled(SECONDS * 1000 - span, SECONDS * 1000 + 1);
    const gcs = fullGcs.filter((g) => g.at >= started);
    const every = Math.max(1, Math.round(gcs.length / 20));
    console.log(
      `heap after full GCs (MiB, ${gcs.length} in the soak, every ${every === 1 ? '' : `${every}th `}shown): ` +
        `${gcs.filter((_, i) => i % every === 0).map((g) => `t=${((g.at - started) / 1000).toFixed(0)}s ${g.heapMiB.toFixed(1)}`).join(', ') || 'none'}`,
    );
    if (sampledEarly.length > 0 && sampledLate.length > 0) {
      console.log(`sampled heap (between GCs), median of the first and last third after warm-up: ${median(sampledEarly).toFixed(1)} -> ${median(sampledLate).toFixed(1)} MiB`);
    }
    if (early.length > 0 && late.length > 0) {
      const a = median(early);
      const b = median(late);
      const growth = b - a;
      const clear = growth > TREND_TOLERANCE.mib && growth > a * TREND_TOLERANCE.ratio;
      check(
        !clear,
        `heap trend after ${(WARM_UP_MS / 1000).toFixed(0)} s warm-up: median after full GCs ${a.toFixed(1)} -> ${b.toFixed(1)} MiB ` +
          `(${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MiB, ${((growth / a) * 100).toFixed(1)}%, first vs last third; ` +
          `a clear trend is more than ${TREND_TOLERANCE.mib} MiB and ${TREND_TOLERANCE.ratio * 100}%)`,
      );
    } else {
      console.log(`n/a  heap trend: full GCs after warm-up, first third ${early.length}, last third ${late.length}; too few to judge`);
    }
  } finally {
    envoy?.close();
    child.kill('SIGTERM');
    await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)));
    await Promise.all([steady.close(), flaky.close()]);
    rmSync(dir, { recursive: true, force: true });
  }
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`soak failed: ${(error as Error).message}`);
    process.exit(1);
  },
);
