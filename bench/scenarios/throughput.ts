/**
 * The saturation runs of the baselines and of the service's hot paths,
 * interleaved: every server is started first, then each round runs each of
 * them once, in the same order, and the median round of each is reported. On
 * a shared machine the same server varies by a fifth or more from one run to
 * the next; interleaving spreads that noise over all of them instead of
 * handing it to whichever ran at a bad moment. Every run samples the server's
 * CPU; the median of the rounds' CPU per Check is reported beside the median
 * throughput. Then one open-loop run each at half of (a)'s median saturation rate.
 */
import type { H2loadResult } from '../h2load.js';
import type { Settings } from '../settings.js';
import type { Idp } from '../support/idp.js';
import { startService } from '../support/service.js';
import { stopProc } from '../support/processes.js';
import { median } from '../support/stats.js';
import { baselineRun, captureAnswer, startBaseline, type BaselineServer, type Baselines } from './baselines.js';
import { decisionRunner, type DecisionKind, type DecisionRun, type DecisionRunner } from './decisions.js';
import { bodyFile } from './load.js';
import { bearerToken } from '../check-request.js';

export interface Throughput {
  baselines?: Baselines;
  runs: Partial<Record<DecisionKind, DecisionRun>>;
}

interface Target {
  name: string;
  run(totalRps?: number): Promise<H2loadResult>;
  results: H2loadResult[];
}

/** The round with the median throughput (an odd count gives a real round; an even one the upper middle). */
function medianRun(results: readonly H2loadResult[]): H2loadResult {
  const sorted = [...results].sort((a, b) => a.reqPerSec - b.reqPerSec);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** The median of the rounds' CPU ms per Check (NaN when none was sampled). */
function medianCpu(results: readonly H2loadResult[]): number {
  return median(results.map((result) => result.cpu?.msPerRequest ?? Number.NaN).filter(Number.isFinite));
}

export async function measureThroughput(
  settings: Settings,
  idp: Idp,
  kinds: readonly DecisionKind[],
  withBaselines: boolean,
  log: (line: string) => void,
): Promise<Throughput> {
  const servers: BaselineServer[] = [];
  // (b') needs the service's answer even when no kind of the service is measured.
  const service = kinds.length > 0 || withBaselines ? await startService({ idpUrl: idp.url }) : null;
  try {
    const targets: Target[] = [];
    let noop: BaselineServer | undefined;
    let answerBytes = 0;
    // The baselines get the request of the cached-allow scenario.
    const file = bodyFile(bearerToken('bench-cached'));
    if (withBaselines) {
      const answer = await captureAnswer(service!.address);
      answerBytes = answer.length;
      const ceiling = await startBaseline('ceiling');
      servers.push(ceiling);
      const same = await startBaseline('answer', answer);
      servers.push(same);
      noop = await startBaseline('noop');
      servers.push(noop);
      const n = noop;
      targets.push({ name: 'ceiling', run: (rps) => baselineRun(ceiling, 'ceiling baseline', file, settings, rps), results: [] });
      targets.push({ name: 'answer', run: (rps) => baselineRun(same, "same-answer baseline (b')", file, settings, rps), results: [] });
      targets.push({ name: 'noop', run: (rps) => baselineRun(n, 'no-op baseline', file, settings, rps), results: [] });
    }
    const runners = new Map<DecisionKind, DecisionRunner>();
    for (const kind of kinds) {
      const runner = await decisionRunner(kind, service!, idp, settings);
      runners.set(kind, runner);
      targets.push({ name: kind, run: (rps) => runner.run(rps), results: [] });
    }

    for (let round = 1; round <= settings.rounds; round += 1) {
      for (const target of targets) {
        const result = await target.run();
        target.results.push(result);
        const cpu = result.cpu ? `, ${(result.cpu.msPerRequest * 1000).toFixed(1)} µs CPU/Check` : '';
        log(`round ${round}/${settings.rounds}: ${target.name} ${Math.round(result.reqPerSec)} req/s${cpu}`);
      }
    }
    const byName = new Map(targets.map((target) => [target.name, target]));
    const sat = (name: string) => medianRun(byName.get(name)!.results);
    const rounds = (name: string) => byName.get(name)!.results.map((result) => result.reqPerSec);
    const cpu = (name: string) => medianCpu(byName.get(name)!.results);

    const out: Throughput = { runs: {} };
    let halfRate: number | null = null;
    if (withBaselines) {
      const noopSat = sat('noop');
      // h2load's --rps is a whole number per client: the offered total is what that adds up to.
      halfRate = Math.max(1, Math.round(median(rounds('noop')) / 2 / settings.clients)) * settings.clients;
      const noopHalf = await baselineRun(noop!, 'no-op baseline at half load', file, settings, halfRate);
      out.baselines = {
        ceiling: sat('ceiling'),
        noop: noopSat,
        answer: sat('answer'),
        answerBytes,
        noopHalf,
        halfRate,
        rounds: { ceiling: rounds('ceiling'), noop: rounds('noop'), answer: rounds('answer') },
        cpuMsPerCheck: { ceiling: cpu('ceiling'), noop: cpu('noop'), answer: cpu('answer') },
      };
    }
    for (const [kind, runner] of runners) {
      const half = halfRate === null ? null : await runner.run(halfRate);
      const counted = await runner.finish();
      out.runs[kind] = { kind, sat: sat(kind), rounds: rounds(kind), cpuMsPerCheck: cpu(kind), half, counted };
    }
    return out;
  } finally {
    for (const server of servers) await stopProc(server.proc);
    await service?.stop();
  }
}
