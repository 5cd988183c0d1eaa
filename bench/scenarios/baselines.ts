/**
 * The two baselines every machine-dependent figure is divided by, each in its
 * own process and fed the same CheckRequest as the service: (a) the
 * conventional no-op (proto-loader, full decode, OK), measured at saturation
 * and at half its own saturation rate; (b) the transport ceiling (no decode,
 * constant answer), at saturation.
 */
import { serving, type Proc } from '../../test/support/service-process.js';
import { bearerToken } from '../check-request.js';
import type { H2loadResult } from '../h2load.js';
import type { Settings } from '../settings.js';
import { benchScript } from '../support/paths.js';
import { startNode, stopProc } from '../support/processes.js';
import { decodeDecision, rawClient, RequestTemplate } from '../support/raw-client.js';
import { assertClean, grpcLoad } from './load.js';

export interface Baselines {
  ceiling: H2loadResult;
  noop: H2loadResult;
  /** (a) open loop at half its saturation rate. */
  noopHalf: H2loadResult;
  /** The total offered rate of the half-load runs, requests/s. */
  halfRate: number;
}

async function startBaseline(kind: 'noop' | 'ceiling'): Promise<{ proc: Proc; port: number }> {
  const proc = startNode(benchScript(`baselines/${kind}-server.js`));
  try {
    const { grpcPort } = await serving(proc, 15_000);
    return { proc, port: grpcPort };
  } catch (error) {
    await stopProc(proc);
    throw error;
  }
}

/** One Check through grpc-js, as Envoy would send it: the baseline must answer OK. */
async function verify(port: number, what: string): Promise<void> {
  const client = rawClient(`127.0.0.1:${port}`);
  try {
    const decision = decodeDecision(await client.check(new RequestTemplate().withToken(bearerToken('baseline'))));
    if (!decision.allowed) throw new Error(`${what} answered ${JSON.stringify(decision)} instead of OK`);
  } finally {
    client.close();
  }
}

export async function measureBaselines(settings: Settings, dataFile: string): Promise<Baselines> {
  const ceilingServer = await startBaseline('ceiling');
  let ceiling: H2loadResult;
  try {
    await verify(ceilingServer.port, 'the ceiling baseline');
    ceiling = await grpcLoad(ceilingServer.port, dataFile, settings);
    assertClean(ceiling, 'ceiling baseline');
  } finally {
    await stopProc(ceilingServer.proc);
  }
  const noopServer = await startBaseline('noop');
  try {
    await verify(noopServer.port, 'the no-op baseline');
    const noop = await grpcLoad(noopServer.port, dataFile, settings);
    assertClean(noop, 'no-op baseline');
    // h2load's --rps is a whole number per client: the offered total is what that adds up to.
    const halfRate = Math.max(1, Math.round(noop.reqPerSec / 2 / settings.clients)) * settings.clients;
    const noopHalf = await grpcLoad(noopServer.port, dataFile, settings, halfRate);
    assertClean(noopHalf, 'no-op baseline at half load');
    return { ceiling, noop, noopHalf, halfRate };
  } finally {
    await stopProc(noopServer.proc);
  }
}
