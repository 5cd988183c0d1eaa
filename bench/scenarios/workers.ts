/**
 * Cached allow with server.workers 2 against the single-process figure. The
 * option is new: when this build's configuration schema does not declare it,
 * the scenario reports "not available" instead of failing.
 */
import { schema } from '../../src/config/schema.js';
import { bearerToken } from '../check-request.js';
import type { H2loadResult } from '../h2load.js';
import type { Settings } from '../settings.js';
import type { Idp } from '../support/idp.js';
import { decisionCounts, startService } from '../support/service.js';
import { verifyDecision } from './decisions.js';
import { assertClean, bodyFile, grpcLoad } from './load.js';

export type Workers =
  | { available: false; reason: string }
  | {
      available: true;
      two: H2loadResult;
      /** Whether /metrics (possibly one worker's) accounted for every request h2load completed. */
      countersMatched: boolean;
      /** CPU ms per Check summed over the primary and its workers, and how many processes that was. */
      cpuMsPerCheck: number;
      processes: number;
    };

export function workersOption(): boolean {
  return 'workers' in schema.server;
}

export async function measureWorkers(idp: Idp, settings: Settings): Promise<Workers> {
  if (!workersOption()) return { available: false, reason: 'server.workers is not in this build' };
  const service = await startService({ idpUrl: idp.url, workers: 2 });
  try {
    // Each worker has its own cache: the warm-up fills the second one.
    await verifyDecision(service.address, 'cached');
    const file = bodyFile(bearerToken('bench-cached'));
    const before = decisionCounts(await service.metrics());
    const two = await grpcLoad(service.grpcPort, file, settings, { cpuPid: service.proc.child.pid! });
    const after = decisionCounts(await service.metrics());
    assertClean(two, 'workers 2');
    await verifyDecision(service.address, 'cached');
    if (after.deny !== before.deny) throw new Error(`workers 2: ${after.deny - before.deny} denies of a cached allow`);
    return {
      available: true,
      two,
      countersMatched: after.allow - before.allow >= two.succeeded,
      cpuMsPerCheck: two.cpu?.msPerRequest ?? Number.NaN,
      processes: two.cpu?.window.processes ?? 0,
    };
  } finally {
    await service.stop();
  }
}
