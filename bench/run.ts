/**
 * `make bench`: starts everything on loopback (the fake authorization server,
 * the two baselines, the service, the peer), runs each scenario for a bounded
 * time, stops everything, prints one table and writes it as JSON under
 * bench/results/. Machine-dependent figures are ratios to baselines measured
 * in the same run. A missed target is reported, not fatal; the exit code is 1
 * only when something is broken (a correctness check failed, a process did
 * not start). Knobs: see settings.ts and the README's Benchmark section.
 */
import { rmSync } from 'node:fs';
import { cpus, release, type } from 'node:os';
import { ensureH2load } from './h2load.js';
import { measurePeer } from './peer/express-gateway.js';
import { render, save, targets, type Results } from './report.js';
import { measureCoalescing } from './scenarios/coalescing.js';
import { measureColdPath } from './scenarios/cold-path.js';
import { measureFixedRate } from './scenarios/fixed-rate.js';
import { measureJwtPath } from './scenarios/jwt-path.js';
import type { DecisionKind } from './scenarios/decisions.js';
import { measureThroughput } from './scenarios/throughput.js';
import { bodyDir } from './scenarios/load.js';
import { measureMemory } from './scenarios/memory.js';
import { measureStartup } from './scenarios/startup.js';
import { measureWorkers } from './scenarios/workers.js';
import { measureHttpMode } from './scenarios/http-mode.js';
import { measureTracing } from './scenarios/tracing.js';
import { readSettings, SCENARIOS, type ScenarioName } from './settings.js';
import { startIdp } from './support/idp.js';
import { killAll } from './support/processes.js';
import { SERVICE_LOGGING, startService, type Service } from './support/service.js';

const log = (message: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);

async function main(): Promise<number> {
  const begin = performance.now();
  const settings = readSettings();
  for (const name of settings.only) {
    if (!(SCENARIOS as readonly string[]).includes(name)) throw new TypeError(`BENCH_ONLY: unknown scenario ${name} (${SCENARIOS.join(', ')})`);
  }
  const cpu = cpus();
  const results: Results = {
    date: new Date().toISOString(),
    machine: {
      cpu: cpu[0]?.model.trim() ?? 'unknown',
      cpus: cpu.length,
      os: `${type()} ${release()}`,
      node: process.version,
      h2load: ensureH2load(),
    },
    settings: { ...settings, only: [...settings.only] },
    logging: SERVICE_LOGGING,
    broken: {},
  };
  const wanted = (name: ScenarioName) => settings.only.size === 0 || settings.only.has(name);
  /** Run one scenario; a failure marks it broken and the bench goes on with the others. */
  const attempt = async <T>(name: ScenarioName | string, fn: () => Promise<T>): Promise<T | undefined> => {
    const started = performance.now();
    log(`${name}...`);
    try {
      const value = await fn();
      log(`${name}: done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      return value;
    } catch (error) {
      const message = (error as Error).message ?? String(error);
      log(`${name}: BROKEN: ${message}`);
      results.broken[name] = message;
      return undefined;
    }
  };

  const idp = await startIdp();
  try {
    const kinds = (['cached', 'deny', 'negative'] as const).filter(wanted);
    if (wanted('baselines') || kinds.length > 0) {
      const throughput = await attempt('throughput', () => measureThroughput(settings, idp, kinds, wanted('baselines'), log));
      if (throughput) {
        results.baselines = throughput.baselines;
        for (const kind of kinds) results[kind as DecisionKind] = throughput.runs[kind];
      }
    }
    if (wanted('fixed-rate')) results.fixedRate = await attempt('fixed-rate', () => measureFixedRate(idp, settings, log));
    if (wanted('workers')) results.workers = await attempt('workers', () => measureWorkers(idp, settings));
    if (wanted('http')) results.http = await attempt('http', () => measureHttpMode(idp, settings));
    if (wanted('tracing')) results.tracing = await attempt('tracing', () => measureTracing(idp, settings, log));

    if (wanted('cold') || wanted('coalescing')) {
      const service = await attempt('service (cold path)', () => startService({ idpUrl: idp.url, maxCacheEntries: 250_000 }));
      if (service) {
        const running: Service = service;
        try {
          if (wanted('cold')) results.cold = await attempt('cold', () => measureColdPath(running, idp, settings));
          if (wanted('coalescing')) results.coalescing = await attempt('coalescing', () => measureCoalescing(running, idp, settings));
        } finally {
          await running.stop();
        }
      }
    }
    if (wanted('jwt')) results.jwt = await attempt('jwt', () => measureJwtPath(settings));
    if (wanted('memory')) results.memory = await attempt('memory', () => measureMemory(idp, settings));
    if (wanted('startup')) results.startup = await attempt('startup', () => measureStartup(idp, settings));
    if (wanted('peer')) {
      results.peer = settings.peer
        ? await attempt('peer', () => measurePeer(idp, settings))
        : { available: false, reason: 'BENCH_PEER=0' };
    }
  } finally {
    await idp.stop();
    rmSync(bodyDir(), { recursive: true, force: true });
  }

  results.targets = targets(results);
  results.wallSeconds = (performance.now() - begin) / 1000;
  const file = save(results);
  process.stdout.write(render(results));
  process.stdout.write(`\nwritten: ${file}\n`);
  const broken = Object.keys(results.broken);
  if (broken.length > 0) process.stderr.write(`bench: broken: ${broken.join(', ')}\n`);
  return broken.length > 0 ? 1 : 0;
}

main().then(
  (code) => {
    killAll();
    process.exit(code);
  },
  (error: unknown) => {
    killAll();
    process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
