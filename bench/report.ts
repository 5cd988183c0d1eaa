/**
 * The bench's output: one table of scenarios (absolute figures and ratios to
 * the baselines of the same run), the issue's targets with pass/fail, and the
 * same as JSON under bench/results/ (latest.json and a timestamped copy).
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './support/paths.js';
import type { H2loadResult } from './h2load.js';
import type { Peer } from './peer/express-gateway.js';
import type { Baselines } from './scenarios/baselines.js';
import type { Coalescing } from './scenarios/coalescing.js';
import type { ColdPath } from './scenarios/cold-path.js';
import type { DecisionRun } from './scenarios/decisions.js';
import type { JwtPath } from './scenarios/jwt-path.js';
import type { Memory } from './scenarios/memory.js';
import type { Startup } from './scenarios/startup.js';
import type { Workers } from './scenarios/workers.js';
import type { HttpMode } from './scenarios/http-mode.js';
import type { TracingCost } from './scenarios/tracing.js';
import type { Settings } from './settings.js';
import { ratio } from './support/stats.js';

export interface Machine {
  cpu: string;
  cpus: number;
  os: string;
  node: string;
  h2load: string;
}

export interface Results {
  date: string;
  machine: Machine;
  settings: Omit<Settings, 'only'> & { only: string[] };
  logging: string;
  baselines?: Baselines;
  cached?: DecisionRun;
  deny?: DecisionRun;
  negative?: DecisionRun;
  workers?: Workers;
  http?: HttpMode;
  tracing?: TracingCost;
  cold?: ColdPath;
  jwt?: JwtPath;
  coalescing?: Coalescing;
  memory?: Memory;
  startup?: Startup;
  peer?: Peer;
  /** Scenarios that could not be measured because something is broken: the bench exits 1. */
  broken: Record<string, string>;
  targets?: Target[];
  wallSeconds?: number;
}

export interface Target {
  target: string;
  measured: string;
  /** null: not measured in this run. */
  pass: boolean | null;
}

const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const ms = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : 'n/a');
const x = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}x` : 'n/a');

function latency(result: H2loadResult | null | undefined): string {
  if (!result) return '';
  return `p50 ${ms(result.latency.p50)} / p99 ${ms(result.latency.p99)} ms`;
}

/** The req/s of every round, when there were several: the spread behind a median. */
function spread(rounds: readonly number[] | undefined): string {
  if (!rounds || rounds.length < 2) return '';
  return ` (median of ${rounds.map((value) => int(value)).join(' / ')})`;
}

/** One row per scenario: name, absolute figures, ratios. */
function rows(r: Results): string[][] {
  const out: string[][] = [];
  const b = r.baselines;
  const half = b ? ` @ ${int(b.halfRate)} req/s offered: ` : '';
  if (b) {
    out.push(['(b) ceiling: grpc-js, no decode', `${int(b.ceiling.reqPerSec)} req/s${spread(b.rounds?.ceiling)}, ${latency(b.ceiling)}`, '1.00x (b)']);
    out.push([
      '(a) no-op: proto-loader decode',
      `${int(b.noop.reqPerSec)} req/s${spread(b.rounds?.noop)}, ${latency(b.noop)};${half}${latency(b.noopHalf)}`,
      `${x(ratio(b.noop.reqPerSec, b.ceiling.reqPerSec))} (b)`,
    ]);
  }
  const decisionRow = (label: string, run: DecisionRun | undefined) => {
    if (!run) return;
    out.push([
      label,
      `${int(run.sat.reqPerSec)} req/s${spread(run.rounds)}, ${latency(run.sat)}${run.half ? `;${half}${latency(run.half)}` : ''}`,
      [
        `${x(ratio(run.sat.reqPerSec, b?.noop.reqPerSec))} (a)`,
        `${x(ratio(run.sat.reqPerSec, b?.ceiling.reqPerSec))} (b)`,
        run.half ? `p99 ${x(ratio(run.half.latency.p99, b?.noopHalf.latency.p99))} (a) at 50%` : '',
      ]
        .filter(Boolean)
        .join(', '),
    ]);
  };
  decisionRow('cached allow (scopes, 8 attributes)', r.cached);
  decisionRow('deny, no token', r.deny);
  decisionRow('deny, negative cache (inactive)', r.negative);
  if (r.http) {
    const h = r.http;
    out.push([
      'HTTP mode: cached allow (h1, 1 request per connection at a time)',
      `${int(h.cached.reqPerSec)} req/s, ${latency(h.cached)}`,
      `${x(ratio(h.cached.reqPerSec, h.plain.reqPerSec))} plain node:http 200 (${int(h.plain.reqPerSec)} req/s)`,
    ]);
    if (!h.nginx.available) out.push(['nginx -> service -> upstream', `not available (${h.nginx.reason})`, '']);
    else {
      out.push([
        `nginx -> service -> upstream at ${int(h.nginx.rate)} req/s`,
        `${latency(h.nginx.authorized)}`,
        `nginx -> upstream alone: ${latency(h.nginx.direct)}; added p50 ${ms(h.nginx.authorized.latency.p50 - h.nginx.direct.latency.p50)} ms, p99 ${ms(h.nginx.authorized.latency.p99 - h.nginx.direct.latency.p99)} ms`,
      ]);
    }
  }
  if (r.tracing) {
    const tr = r.tracing;
    out.push([
      `cached allow, tracing on (${tr.sampleRatio * 100} % sampled, OTLP to a discarding sink)`,
      `${int(tr.on.reqPerSec)} req/s, ${latency(tr.on)}`,
      `${x(ratio(tr.on.reqPerSec, tr.off.reqPerSec))} tracing off (${int(tr.off.reqPerSec)} req/s, ${latency(tr.off)})`,
    ]);
    out.push([
      'cached allow, tracing on, every Check sampled (its traceparent says so)',
      `${int(tr.all.reqPerSec)} req/s, ${latency(tr.all)}`,
      `${x(ratio(tr.all.reqPerSec, tr.off.reqPerSec))} tracing off; ${int(tr.exports.requests)} OTLP exports, ${int(tr.exports.bytes / 1024)} KiB`,
    ]);
  }
  if (r.workers) {
    if (!r.workers.available) out.push(['cached allow, 2 workers', `not available (${r.workers.reason})`, '']);
    else
      out.push([
        'cached allow, 2 workers',
        `${int(r.workers.two.reqPerSec)} req/s, ${latency(r.workers.two)}${r.workers.countersMatched ? '' : ' (per-worker /metrics: counts not cross-checked)'}`,
        `${x(ratio(r.workers.two.reqPerSec, r.cached?.sat.reqPerSec))} 1 worker, ${x(ratio(r.workers.two.reqPerSec, b?.noop.reqPerSec))} (a)`,
      ]);
  }
  if (r.cold) {
    const c = r.cold;
    out.push([
      `cold path (new token each, ${c.concurrency} in flight)`,
      `${int(c.checks.perSec)} Checks/s; plain undici POST loop ${int(c.undici.perSec)} req/s; ` +
        `CPU: service ${c.serviceCpuMsPerCheck.toFixed(3)} ms/Check, undici loop ${c.undiciCpuMsPerRequest.toFixed(3)} ms/request`,
      `overhead ${x(c.overhead)} undici (CPU ${x(c.serviceCpuMsPerCheck / c.undiciCpuMsPerRequest)}), ${c.introspectionsPerCheck.toFixed(3)} introspections/Check`,
    ]);
  }
  if (r.jwt) {
    const j = r.jwt;
    out.push([
      `JWT access tokens, kind jwt (RS256, ${j.concurrency} in flight)`,
      `cold (new token each, signature verified): ${int(j.cold.perSec)} Checks/s, CPU ${j.serviceCpuMsPerCold.toFixed(3)} ms/Check; ` +
        `cached: ${int(j.cached.perSec)} Checks/s; JWKS fetched ${j.jwksFetches} time(s)`,
      `cold: ${x(ratio(j.cold.perSec, r.cold?.checks.perSec))} the cold introspection path (same loop)` +
        (r.cold ? `, CPU ${x(r.cold.serviceCpuMsPerCheck / j.serviceCpuMsPerCold)} less per Check` : ''),
    ]);
  }
  if (r.coalescing) {
    const c = r.coalescing;
    out.push([
      `coalescing (${c.concurrent} Checks of 1 new token, IdP ${c.delayMs} ms)`,
      `p50 ${ms(c.latency.p50)} / p99 ${ms(c.latency.p99)} / max ${ms(c.latency.max)} ms`,
      `introspections per round: ${c.callsPerRound.join(', ')}`,
    ]);
  }
  if (r.memory) {
    const m = r.memory;
    out.push([
      `memory (${int(m.entries)} cached answers, 12 members)`,
      `heap ${int(m.heapPerEntry)} B/entry, external ${int(m.externalPerEntry)} B/entry, RSS ${int(m.rssPerEntry)} B/entry ` +
        `(heap ${m.heapBeforeMiB.toFixed(1)} -> ${m.heapAfterMiB.toFixed(1)} MiB, filled in ${m.fillSeconds.toFixed(0)} s); ` +
        `maxCacheEntries ${int(m.capacity)}: ${int(m.heldAtCapacity)} held, ${int(m.evictions)} evicted past it, ` +
        `so about ${((m.heapPerEntry * m.capacity) / 2 ** 20).toFixed(0)} MiB of heap at that setting`,
      m.method,
    ]);
  }
  if (r.startup) {
    out.push([
      `start-up to SERVING (${r.startup.samples.length} starts)`,
      `median ${int(r.startup.median)} ms (${r.startup.samples.map((s) => int(s)).join(', ')})`,
      '',
    ]);
  }
  if (r.peer) {
    const p = r.peer;
    if (!p.available) out.push(['peer: express-gateway 1.16', `peer not available (${p.reason})`, '']);
    else
      out.push([
        `peer: ${p.name} (oauth2-introspect ttl 60 + terminate; ${p.logging})`,
        `${int(p.result.reqPerSec)} decisions/s (h2load --h1, ${p.concurrency} connections), ${latency(p.result)}`,
        `ours (cached allow) ${x(ratio(r.cached?.sat.reqPerSec, p.result.reqPerSec))} the peer`,
      ]);
  }
  for (const [name, message] of Object.entries(r.broken)) out.push([`${name}: BROKEN`, message.split('\n')[0]!.slice(0, 160), '']);
  return out;
}

export function targets(r: Results): Target[] {
  const b = r.baselines;
  const list: Target[] = [];
  const add = (target: string, value: number, pass: (v: number) => boolean, shown: (v: number) => string) =>
    list.push({ target, measured: Number.isFinite(value) ? shown(value) : 'not measured', pass: Number.isFinite(value) ? pass(value) : null });
  add('cached allow throughput >= 1.0x (a)', ratio(r.cached?.sat.reqPerSec, b?.noop.reqPerSec), (v) => v >= 1.0, x);
  add('cached allow throughput >= 0.8x (b)', ratio(r.cached?.sat.reqPerSec, b?.ceiling.reqPerSec), (v) => v >= 0.8, x);
  add(
    "cached p99 at 50% of (a)'s rate <= 1.25x (a)'s p99 there",
    ratio(r.cached?.half?.latency.p99, b?.noopHalf.latency.p99),
    (v) => v <= 1.25,
    x,
  );
  add('cold-path overhead <= 1.3x plain undici loop', r.cold?.overhead ?? Number.NaN, (v) => v <= 1.3, x);
  add('cold local JWT validation >= 2x the cold introspection rate', ratio(r.jwt?.cold.perSec, r.cold?.checks.perSec), (v) => v >= 2, x);
  add('heap per cached entry <= 2 KiB', r.memory?.heapPerEntry ?? Number.NaN, (v) => v <= 2048, (v) => `${int(v)} B`);
  add('start-up to SERVING <= 1 s (median)', r.startup?.median ?? Number.NaN, (v) => v <= 1000, (v) => `${int(v)} ms`);
  add(
    'coalescing: introspection calls == 1',
    r.coalescing ? Math.max(...r.coalescing.callsPerRound) : Number.NaN,
    () => r.coalescing!.callsPerRound.every((c) => c === 1),
    () => r.coalescing!.callsPerRound.join(', '),
  );
  add('cold path: introspections per Check == 1.0', r.cold?.introspectionsPerCheck ?? Number.NaN, (v) => Math.abs(v - 1) < 1e-9, (v) => v.toFixed(3));
  return list;
}

function table(header: string[], body: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

export function render(r: Results): string {
  const s = r.settings;
  const lines = [
    `make bench: ${r.date}`,
    `machine: ${r.machine.cpu} x ${r.machine.cpus}, ${r.machine.os}, Node ${r.machine.node}, ${r.machine.h2load}`,
    `load: h2load -c ${s.clients} -m ${s.streams} (gRPC over h2c), ${s.warmUpS} s warm-up + ${s.durationS} s per run; ` +
      `saturation runs of (a), (b), cached, deny and negative interleaved in ${s.rounds ?? 1} rounds, median reported; ` +
      `50% runs: open loop (--rps) at half of (a)'s median saturation rate`,
    `service: node dist/src/main.js, ${r.logging}; baselines and service each in their own process; every figure below is from this one run`,
    '',
    table(['scenario', 'absolute', 'ratios'], rows(r)),
    '',
    table(
      ['target (issue 7)', 'measured', 'result'],
      (r.targets ?? []).map((t) => [t.target, t.measured, t.pass === null ? 'n/a' : t.pass ? 'PASS' : 'FAIL']),
    ),
  ];
  if (r.wallSeconds !== undefined) lines.push('', `wall time: ${r.wallSeconds.toFixed(0)} s`);
  return `${lines.join('\n')}\n`;
}

/** Write bench/results/latest.json and a timestamped copy (each via a .tmp file and a rename). */
export function save(r: Results): string {
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const text = `${JSON.stringify(r, null, 2)}\n`;
  const stamp = r.date.replace(/[:.]/g, '-');
  for (const name of [`${stamp}.json`, 'latest.json']) {
    const file = join(dir, name);
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  }
  return join(dir, 'latest.json');
}
