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
  /** Saturation req/s of every round, in order; the results above are the median rounds. */
  rounds: { ceiling: number[]; noop: number[] };
}

export interface BaselineServer {
  proc: Proc;
  port: number;
}

/** A baseline server, started and checked with one Check. */
export async function startBaseline(kind: 'noop' | 'ceiling'): Promise<BaselineServer> {
  const proc = startNode(benchScript(`baselines/${kind}-server.js`));
  try {
    const { grpcPort } = await serving(proc, 15_000);
    await verify(grpcPort, kind === 'noop' ? 'the no-op baseline' : 'the ceiling baseline');
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

/** One h2load run against a baseline; saturation unless `totalRps` is given. */
export async function baselineRun(server: BaselineServer, what: string, dataFile: string, settings: Settings, totalRps?: number): Promise<H2loadResult> {
  const result = await grpcLoad(server.port, dataFile, settings, totalRps);
  assertClean(result, what);
  return result;
}
