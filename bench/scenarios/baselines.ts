/**
 * The baselines every machine-dependent figure is divided by, each in its
 * own process and fed the same CheckRequest as the service: (a) the
 * conventional no-op (proto-loader, full decode, OK), measured at saturation
 * and at half its own saturation rate; (b) the transport ceiling (no decode,
 * constant OK), at saturation; (b') the same transport answering the very
 * bytes the service answers to the cached-allow request, captured from the
 * running service, so that what we decide is told apart from what we send.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { serving, type Proc } from '../../test/support/service-process.js';
import { bearerToken } from '../check-request.js';
import type { H2loadResult } from '../h2load.js';
import type { Settings } from '../settings.js';
import { benchScript } from '../support/paths.js';
import { startNode, stopProc } from '../support/processes.js';
import { decodeDecision, rawClient, RequestTemplate } from '../support/raw-client.js';
import { assertClean, bodyDir, grpcLoad } from './load.js';

export interface Baselines {
  ceiling: H2loadResult;
  noop: H2loadResult;
  /** (b'): the ceiling answering the service's cached allow. */
  answer: H2loadResult;
  /** Bytes of that answer (the encoded CheckResponse, without the gRPC frame). */
  answerBytes: number;
  /** (a) open loop at half its saturation rate. */
  noopHalf: H2loadResult;
  /** The total offered rate of the half-load runs, requests/s. */
  halfRate: number;
  /** Saturation req/s of every round, in order; the results above are the median rounds. */
  rounds: { ceiling: number[]; noop: number[]; answer: number[] };
  /** Median over the rounds of each one's CPU ms per Check. */
  cpuMsPerCheck: { ceiling: number; noop: number; answer: number };
}

export type BaselineKind = 'noop' | 'ceiling' | 'answer';

export interface BaselineServer {
  proc: Proc;
  port: number;
}

const NAMES: Record<BaselineKind, string> = { noop: 'the no-op baseline', ceiling: 'the ceiling baseline', answer: "the same-answer baseline (b')" };

/**
 * A baseline server, started and checked with one Check; `answer` needs the
 * bytes it must answer (see captureAnswer), and must answer exactly them.
 */
export async function startBaseline(kind: BaselineKind, answer?: Buffer): Promise<BaselineServer> {
  let args: string[] = [];
  if (kind === 'answer') {
    if (!answer) throw new TypeError('the same-answer baseline needs the answer');
    const file = join(bodyDir(), 'answer.bin');
    writeFileSync(file, answer);
    args = [file];
  }
  const proc = startNode(benchScript(`baselines/${kind === 'noop' ? 'noop' : 'ceiling'}-server.js`), args);
  try {
    const { grpcPort } = await serving(proc, 15_000);
    const got = await checkOnce(grpcPort, NAMES[kind]);
    if (answer && !got.equals(answer)) throw new Error(`${NAMES[kind]} answered ${got.length} bytes, not the ${answer.length} it was given`);
    return { proc, port: grpcPort };
  } catch (error) {
    await stopProc(proc);
    throw error;
  }
}

/**
 * The encoded CheckResponse `address` sends for the cached-allow request: the
 * second of two Checks of the bench's cached token (the first fills the cache),
 * which must be an allow.
 */
export async function captureAnswer(address: string): Promise<Buffer> {
  const client = rawClient(address);
  try {
    const request = new RequestTemplate().withToken(bearerToken('bench-cached'));
    await client.check(request);
    const answer = await client.check(request);
    if (!decodeDecision(answer).allowed) throw new Error('the service did not allow the cached-allow request');
    return answer;
  } finally {
    client.close();
  }
}

/** One Check through grpc-js, as Envoy would send it: the baseline must answer OK. */
async function checkOnce(port: number, what: string): Promise<Buffer> {
  const client = rawClient(`127.0.0.1:${port}`);
  try {
    const answer = await client.check(new RequestTemplate().withToken(bearerToken('baseline')));
    const decision = decodeDecision(answer);
    if (!decision.allowed) throw new Error(`${what} answered ${JSON.stringify(decision)} instead of OK`);
    return answer;
  } finally {
    client.close();
  }
}

/** One h2load run against a baseline, its CPU sampled; saturation unless `totalRps` is given. */
export async function baselineRun(server: BaselineServer, what: string, dataFile: string, settings: Settings, totalRps?: number): Promise<H2loadResult> {
  const result = await grpcLoad(server.port, dataFile, settings, { totalRps, cpuPid: server.proc.child.pid! });
  assertClean(result, what);
  return result;
}
