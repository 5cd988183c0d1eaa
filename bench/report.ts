/**
 * The bench's output: one table of scenarios (absolute figures and ratios to
 * the baselines of the same run, CPU per Check first), the issue's targets met or
 * missed, the fixed-rate latency table, and the
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
import type { FixedRate } from './scenarios/fixed-rate.js';
import { keptUp } from './open-loop/schedule.js';
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
  fixedRate?: FixedRate;
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
/** CPU ms per Check, shown in µs: the figures are tens to hundreds of µs. */
const us = (cpuMs: number | undefined) => (cpuMs !== undefined && Number.isFinite(cpuMs) ? `${(cpuMs * 1000).toFixed(1)} µs` : 'n/a');
/** Not a per-Check scenario. */
const NONE = '-';

function latency(result: H2loadResult | null | undefined): string {
  if (!result) return '';
  return `p50 ${ms(result.latency.p50)} / p99 ${ms(result.latency.p99)} ms`;
}

/** The req/s of every round, when there were several: the spread behind a median. */
function spread(rounds: readonly number[] | undefined): string {
  if (!rounds || rounds.length < 2) return '';
  return ` (median of ${rounds.map((value) => int(value)).join(' / ')})`;
}

/** One row per scenario: name, CPU per Check (the headline), absolute figures, ratios. */
function rows(r: Results): string[][] {
  const out: string[][] = [];
  const b = r.baselines;
  const bc = b?.cpuMsPerCheck;
  const half = b ? ` @ ${int(b.halfRate)} req/s offered: ` : '';
  if (b) {
    out.push(['(b) ceiling: grpc-js, no decode, bare OK', us(bc?.ceiling), `${int(b.ceiling.reqPerSec)} req/s${spread(b.rounds.ceiling)}, ${latency(b.ceiling)}`, '1.00x (b)']);
    out.push([
      `(b') ceiling answering our cached allow (${int(b.answerBytes)} B)`,
      us(bc?.answer),
      `${int(b.answer.reqPerSec)} req/s${spread(b.rounds.answer)}, ${latency(b.answer)}`,
      `${x(ratio(b.answer.reqPerSec, b.ceiling.reqPerSec))} (b), CPU ${x(ratio(bc?.answer, bc?.ceiling))} (b)`,
    ]);
    out.push([
      '(a) no-op: proto-loader decode',
      us(bc?.noop),
      `${int(b.noop.reqPerSec)} req/s${spread(b.rounds.noop)}, ${latency(b.noop)};${half}${latency(b.noopHalf)}`,
      `${x(ratio(b.noop.reqPerSec, b.ceiling.reqPerSec))} (b), CPU ${x(ratio(bc?.noop, bc?.ceiling))} (b)`,
    ]);
  }
  const decisionRow = (label: string, run: DecisionRun | undefined) => {
    if (!run) return;
    out.push([
      label,
      us(run.cpuMsPerCheck),
      `${int(run.sat.reqPerSec)} req/s${spread(run.rounds)}, ${latency(run.sat)}${run.half ? `;${half}${latency(run.half)}` : ''}`,
      b
        ? `CPU ${x(ratio(run.cpuMsPerCheck, bc?.noop))} (a) / ${x(ratio(run.cpuMsPerCheck, bc?.answer))} (b'); ` +
          `throughput ${x(ratio(run.sat.reqPerSec, b.noop.reqPerSec))} (a) / ${x(ratio(run.sat.reqPerSec, b.ceiling.reqPerSec))} (b) / ` +
          `${x(ratio(run.sat.reqPerSec, b.answer.reqPerSec))} (b')` +
          (run.half ? `; p99 ${x(ratio(run.half.latency.p99, b.noopHalf.latency.p99))} (a) at 50%` : '')
        : '',
    ]);
  };
  decisionRow('cached allow (scopes, 8 attributes)', r.cached);
  decisionRow('deny, no token', r.deny);
  decisionRow('deny, negative cache (inactive)', r.negative);
  if (r.http) {
    const h = r.http;
    out.push([
      'HTTP mode: cached allow (h1, 1 request per connection at a time)',
      us(h.cpuMsPerCheck.cached),
      `${int(h.cached.reqPerSec)} req/s, ${latency(h.cached)}`,
      `${x(ratio(h.cached.reqPerSec, h.plain.reqPerSec))} plain node:http 200 (${int(h.plain.reqPerSec)} req/s, CPU ${us(h.cpuMsPerCheck.plain)}/request)`,
    ]);
    if (!h.nginx.available) out.push(['nginx -> service -> upstream', NONE, `not available (${h.nginx.reason})`, '']);
    else {
      out.push([
        `nginx -> service -> upstream at ${int(h.nginx.rate)} req/s`,
        NONE,
        `${latency(h.nginx.authorized)}`,
        `nginx -> upstream alone: ${latency(h.nginx.direct)}; added p50 ${ms(h.nginx.authorized.latency.p50 - h.nginx.direct.latency.p50)} ms, p99 ${ms(h.nginx.authorized.latency.p99 - h.nginx.direct.latency.p99)} ms`,
      ]);
    }
  }
  if (r.tracing) {
    const tr = r.tracing;
    const tc = tr.cpuMsPerCheck;
    out.push([
      'cached allow, tracing off (the default; its own service, same run)',
      us(tc?.off),
      `${int(tr.off.reqPerSec)} req/s${spread(tr.rounds.off)}, ${latency(tr.off)}`,
      '',
    ]);
    out.push([
      `cached allow, tracing on (${tr.sampleRatio * 100} % sampled, OTLP to a discarding sink)`,
      us(tc?.on),
      `${int(tr.on.reqPerSec)} req/s${spread(tr.rounds.on)}, ${latency(tr.on)}`,
      `CPU ${x(ratio(tc?.on, tc?.off))} tracing off, throughput ${x(ratio(tr.on.reqPerSec, tr.off.reqPerSec))}`,
    ]);
    out.push([
      'cached allow, tracing on, every Check sampled (its traceparent says so)',
      us(tc?.all),
      `${int(tr.all.reqPerSec)} req/s${spread(tr.rounds.all)}, ${latency(tr.all)}`,
      `CPU ${x(ratio(tc?.all, tc?.off))} tracing off, throughput ${x(ratio(tr.all.reqPerSec, tr.off.reqPerSec))}; ${int(tr.exports.requests)} OTLP exports, ${int(tr.exports.bytes / 1024)} KiB`,
    ]);
  }
  if (r.workers) {
    if (!r.workers.available) out.push(['cached allow, 2 workers', NONE, `not available (${r.workers.reason})`, '']);
    else
      out.push([
        `cached allow, 2 workers (CPU of ${r.workers.processes} processes)`,
        us(r.workers.cpuMsPerCheck),
        `${int(r.workers.two.reqPerSec)} req/s, ${latency(r.workers.two)}${r.workers.countersMatched ? '' : ' (per-worker /metrics: counts not cross-checked)'}`,
        `${x(ratio(r.workers.two.reqPerSec, r.cached?.sat.reqPerSec))} 1 worker, ${x(ratio(r.workers.two.reqPerSec, b?.noop.reqPerSec))} (a), ` +
          `CPU ${x(ratio(r.workers.cpuMsPerCheck, r.cached?.cpuMsPerCheck))} 1 worker`,
      ]);
  }
  if (r.cold) {
    const c = r.cold;
    out.push([
      `cold path (new token each, ${c.concurrency} in flight)`,
      us(c.serviceCpuMsPerCheck),
      `${int(c.checks.perSec)} Checks/s; plain undici POST loop ${int(c.undici.perSec)} req/s, its CPU ${us(c.undiciCpuMsPerRequest)}/request`,
      `CPU ${x(c.serviceCpuMsPerCheck / c.undiciCpuMsPerRequest)} undici` +
        (r.cached ? `, ${x(ratio(c.serviceCpuMsPerCheck, r.cached.cpuMsPerCheck + 2 * c.undiciCpuMsPerRequest))} (cached + 2 x undici)` : '') +
        `; time ${x(c.overhead)} undici, ${c.introspectionsPerCheck.toFixed(3)} introspections/Check`,
    ]);
  }
  if (r.jwt) {
    const j = r.jwt;
    out.push([
      `JWT access tokens, kind jwt (RS256, ${j.concurrency} in flight)`,
      us(j.serviceCpuMsPerCold),
      `cold (new token each, signature verified): ${int(j.cold.perSec)} Checks/s; ` +
        `cached: ${int(j.cached.perSec)} Checks/s, CPU ${us(j.serviceCpuMsPerCached)}/Check; JWKS fetched ${j.jwksFetches} time(s)`,
      `cold: ${x(ratio(j.cold.perSec, r.cold?.checks.perSec))} the cold introspection path (same loop)` +
        (r.cold ? `, CPU ${x(r.cold.serviceCpuMsPerCheck / j.serviceCpuMsPerCold)} less per Check` : ''),
    ]);
  }
  if (r.coalescing) {
    const c = r.coalescing;
    out.push([
      `coalescing (${c.concurrent} Checks of 1 new token, IdP ${c.delayMs} ms)`,
      NONE,
      `p50 ${ms(c.latency.p50)} / p99 ${ms(c.latency.p99)} / max ${ms(c.latency.max)} ms`,
      `introspections per round: ${c.callsPerRound.join(', ')}`,
    ]);
  }
  if (r.memory) {
    const m = r.memory;
    out.push([
      `memory (${int(m.entries)} cached answers, 12 members)`,
      NONE,
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
      NONE,
      `median ${int(r.startup.median)} ms (${r.startup.samples.map((s) => int(s)).join(', ')})`,
      '',
    ]);
  }
  if (r.peer) {
    const p = r.peer;
    if (!p.available) out.push(['peer: express-gateway 1.16', NONE, `peer not available (${p.reason})`, '']);
    else
      out.push([
        `peer: ${p.name} (oauth2-introspect ttl 60 + terminate; ${p.logging})`,
        us(p.cpuMsPerCheck),
        `${int(p.result.reqPerSec)} decisions/s (h2load --h1, ${p.concurrency} connections), ${latency(p.result)}`,
        `ours (cached allow) ${x(ratio(r.cached?.sat.reqPerSec, p.result.reqPerSec))} the peer, CPU ${x(ratio(p.cpuMsPerCheck, r.cached?.cpuMsPerCheck))} ours per decision`,
      ]);
  }
  for (const [name, message] of Object.entries(r.broken)) out.push([`${name}: BROKEN`, NONE, message.split('\n')[0]!.slice(0, 160), '']);
  return out;
}

/** The fixed-rate table: one row per offered rate and server. */
function fixedRateRows(f: FixedRate): string[][] {
  const out: string[][] = [];
  for (const row of f.rows) {
    for (const [label, run] of [
      ['service', row.service],
      ['(a) no-op', row.noop],
    ] as const) {
      out.push([
        int(row.rate),
        label,
        us(run.cpu?.msPerCheck),
        int(run.sentPerSec),
        int(run.answeredPerSec),
        ms(run.latency.p50),
        ms(run.latency.p99),
        ms(run.latency.p999),
        `${ms(run.fromSend.p50)} / ${ms(run.fromSend.p99)} / ${ms(run.fromSend.p999)}`,
        `${int(run.errors + run.unanswered)}${run.wrong > 0 ? ` (+${int(run.wrong)} wrong)` : ''}`,
        `${ms(run.sendLag.p99)} ms, ${(run.generatorCpu * 100).toFixed(0)}% core${keptUp(run) ? '' : ' BEHIND'}`,
      ]);
    }
  }
  return out;
}

export function targets(r: Results): Target[] {
  const b = r.baselines;
  const list: Target[] = [];
  const add = (target: string, value: number, pass: (v: number) => boolean, shown: (v: number) => string) =>
    list.push({ target, measured: Number.isFinite(value) ? shown(value) : 'not measured', pass: Number.isFinite(value) ? pass(value) : null });

  const cold = r.cold?.serviceCpuMsPerCheck;
  const cached = r.cached?.cpuMsPerCheck;
  const undici = r.cold?.undiciCpuMsPerRequest;
  const budget = cached !== undefined && undici !== undefined ? cached + 2 * undici : Number.NaN;
  add(
    'cold Check CPU <= cached-allow CPU + 2 x the plain undici loop CPU per request',
    ratio(cold, budget),
    (v) => v <= 1,
    (v) => `${us(cold)} vs ${us(cached)} + 2 x ${us(undici)} = ${us(budget)} (${x(v)})`,
  );

  // One target of two conditions: met when both are, missed when either is.
  const cpuVsNoop = ratio(cached, b?.cpuMsPerCheck.noop);
  const rateVsAnswer = ratio(r.cached?.sat.reqPerSec, b?.answer.reqPerSec);
  const both = [cpuVsNoop <= 1, rateVsAnswer >= 0.9];
  const measured = [Number.isFinite(cpuVsNoop), Number.isFinite(rateVsAnswer)];
  list.push({
    target: "cached allow CPU per Check <= (a)'s, and throughput >= 0.9x (b')",
    measured: `CPU ${us(cached)} = ${x(cpuVsNoop)} (a)'s ${us(b?.cpuMsPerCheck.noop)}; throughput ${x(rateVsAnswer)} (b')`,
    pass: both.some((ok, i) => measured[i] && !ok) ? false : measured.every(Boolean) ? true : null,
  });

  add('heap per cached answer (12 members) <= 2,048 B', r.memory?.heapPerEntry ?? Number.NaN, (v) => v <= 2048, (v) => `${int(v)} B`);
  const peer = r.peer?.available ? r.peer.result.reqPerSec : undefined;
  add('Express Gateway: ours >= 3x its decisions/s', ratio(r.cached?.sat.reqPerSec, peer), (v) => v >= 3, x);
  const two = r.workers?.available ? r.workers.two.reqPerSec : undefined;
  add('2 workers >= 1.8x one worker', ratio(two, r.cached?.sat.reqPerSec), (v) => v >= 1.8, x);
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
      `saturation runs of (a), (b), (b'), cached, deny and negative interleaved in ${s.rounds ?? 1} rounds, median reported; ` +
      `50% runs: open loop (--rps) at half of (a)'s median saturation rate`,
    `service: node dist/src/main.js, ${r.logging}; baselines and service each in their own process; every figure below is from this one run`,
    'CPU/Check: user + system time of the measured process and its children (/proc/<pid>/stat, all threads) over the measured window, per Check answered in it',
    '',
    table(['scenario', 'CPU/Check', 'absolute', 'ratios'], rows(r)),
  ];
  if (r.fixedRate && r.fixedRate.rows.length > 0) {
    const f = r.fixedRate;
    lines.push(
      '',
      `fixed rate, cached allow: open loop over ${f.connections} HTTP/2 connections, ${f.warmUpS} s warm-up + ${f.durationS} s per rate; ` +
        "latency from each request's scheduled time (ms), and beside it from the moment it was actually sent (the server's part, when the generator was late); the generator is its own process, its lateness in the last column " +
        '(BEHIND: it sent under 97% of the rate or over 1 ms late at p99, so that row measures the generator, not the server)',
      table(['offered/s', 'server', 'CPU/Check', 'sent/s', 'answered/s', 'p50', 'p99', 'p99.9', 'from send: p50 / p99 / p99.9', 'errors', 'generator: lag p99, CPU'], fixedRateRows(f)),
    );
  }
  lines.push(
    '',
    table(
      ['target (issue 15)', 'measured', 'result'],
      (r.targets ?? []).map((t) => [t.target, t.measured, t.pass === null ? 'n/a' : t.pass ? 'met' : 'missed']),
    ),
  );
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
