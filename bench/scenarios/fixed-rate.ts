/**
 * The fixed-rate latency table, as OPA and Istio publish theirs: cached
 * allow at each offered rate (1k, 5k, 10k Checks/s by default), open loop,
 * p50/p99/p99.9 from each request's due time, for the service and for (a)
 * in the same run, the two interleaved rate by rate. The service's decision
 * counters must account for every OK answer, all allows, without an
 * introspection call.
 */
import { bearerToken, grpcFrame } from '../check-request.js';
import { runOpenLoop, type OpenLoopRun } from '../open-loop.js';
import type { Settings } from '../settings.js';
import type { Idp } from '../support/idp.js';
import { stopProc } from '../support/processes.js';
import { RequestTemplate } from '../support/raw-client.js';
import { decisionCounts, startService } from '../support/service.js';
import { startBaseline } from './baselines.js';
import { verifyDecision } from './decisions.js';

export interface FixedRateRow {
  rate: number;
  service: OpenLoopRun;
  noop: OpenLoopRun;
}

export interface FixedRate {
  rows: FixedRateRow[];
  connections: number;
  durationS: number;
  warmUpS: number;
}

/** A request is given this long before it counts as an error. */
const TIMEOUT_MS = 2000;

export async function measureFixedRate(idp: Idp, settings: Settings, log: (line: string) => void): Promise<FixedRate> {
  const service = await startService({ idpUrl: idp.url });
  try {
    const noop = await startBaseline('noop');
    try {
      await verifyDecision(service.address, 'cached');
      const frame = grpcFrame(new RequestTemplate().withToken(bearerToken('bench-cached')));
      const introspectionsBefore = await idp.count();
      const run = (address: string, rate: number, pid: number) =>
        runOpenLoop(
          {
            address,
            frame,
            rate,
            warmUpS: settings.rateWarmUpS,
            durationS: settings.rateDurationS,
            connections: settings.rateConnections,
            timeoutMs: TIMEOUT_MS,
          },
          pid,
        );
      const rows: FixedRateRow[] = [];
      for (const rate of settings.rates) {
        const before = decisionCounts(await service.metrics());
        const ours = await run(service.address, rate, service.proc.child.pid!);
        const after = decisionCounts(await service.metrics());
        const allowed = (after.reasons.ok ?? 0) - (before.reasons.ok ?? 0);
        if (after.deny !== before.deny || allowed !== after.allow - before.allow) {
          throw new Error(`fixed rate ${rate}/s: ${after.deny - before.deny} denies and ${after.allow - before.allow - allowed} allows of another reason`);
        }
        // The warm-up's answers are counted by the service, not in the summary.
        if (allowed < ours.ok || ours.wrong > 0) throw new Error(`fixed rate ${rate}/s: ${ours.ok} OK answers, ${ours.wrong} not an allow, ${allowed} allows counted`);
        const theirs = await run(`127.0.0.1:${noop.port}`, rate, noop.proc.child.pid!);
        if (theirs.wrong > 0) throw new Error(`fixed rate ${rate}/s: (a) answered ${theirs.wrong} times with something else than OK`);
        const brief = (r: OpenLoopRun) =>
          `p50 ${r.latency.p50.toFixed(3)} p99 ${r.latency.p99.toFixed(3)} ms (from the send p99 ${r.fromSend.p99.toFixed(3)}), sent ${Math.round(r.sentPerSec)}/s (lag p99 ${r.sendLag.p99.toFixed(3)} ms), ` +
          `${r.errors} errors, ${r.unanswered} unanswered, generator ${(r.generatorCpu * 100).toFixed(0)}% of a core${r.firstError ? ` (first error: ${r.firstError})` : ''}`;
        log(`fixed rate ${rate}/s: service ${brief(ours)}; (a) ${brief(theirs)}`);
        rows.push({ rate, service: ours, noop: theirs });
      }
      const calls = (await idp.count()) - introspectionsBefore;
      if (calls !== 0) throw new Error(`fixed rate: ${calls} introspection calls (the answer should be cached)`);
      return { rows, connections: settings.rateConnections, durationS: settings.rateDurationS, warmUpS: settings.rateWarmUpS };
    } finally {
      await stopProc(noop.proc);
    }
  } finally {
    await service.stop();
  }
}
