/**
 * The cold path: every Check carries a token never seen before, so each one
 * costs an introspection call to the fake authorization server (which answers
 * at once). Driven by a Node gRPC loop with bounded concurrency (h2load cannot
 * vary the body), and compared with a plain undici loop POSTing the same form
 * body to the same server at the same concurrency: the ratio is the price of
 * everything the service adds to one introspection.
 */
import { randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import { formEncode } from '../../src/introspection/endpoint-request.js';
import { tokenSeries } from '../check-request.js';
import type { Settings } from '../settings.js';
import { cpuWindow, msPerCheck, sampleCpu } from '../support/cpu.js';
import type { Idp } from '../support/idp.js';
import { decodeDecision, http2Client, isAllow, RequestTemplate } from '../support/raw-client.js';
import { decisionCounts, IDP_CLIENT_ID, IDP_CLIENT_SECRET, type Service } from '../support/service.js';

export interface LoopResult {
  count: number;
  seconds: number;
  perSec: number;
  /** Answers that were not the expected allow / active. */
  wrong: number;
  errors: number;
}

export interface ColdPath {
  checks: LoopResult;
  undici: LoopResult;
  /** Check time over plain-POST time at equal concurrency: undici's rate / the Checks' rate. */
  overhead: number;
  /**
   * CPU time, in ms, the service spent per cold Check (its process tree, from
   * /proc), and the load generator per plain undici POST (process.cpuUsage):
   * what the throughput ratio mixes up with the 2 cores being shared by three processes.
   */
  serviceCpuMsPerCheck: number;
  undiciCpuMsPerRequest: number;
  introspectionsPerCheck: number;
  concurrency: number;
}

/**
 * Run `op(i)` with `concurrency` workers until `seconds` have passed or
 * `maxCount` operations were started; every operation is awaited.
 */
export async function loop(
  concurrency: number,
  seconds: number,
  maxCount: number,
  op: (i: number) => Promise<boolean>,
): Promise<LoopResult> {
  let started = 0;
  let wrong = 0;
  let errors = 0;
  let firstError: unknown;
  const begin = performance.now();
  const stopAt = begin + seconds * 1000;
  const worker = async () => {
    while (performance.now() < stopAt && started < maxCount) {
      const i = started++;
      try {
        if (!(await op(i))) wrong += 1;
      } catch (error) {
        errors += 1;
        firstError ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - begin) / 1000;
  if (errors > 0) process.stderr.write(`loop: ${errors} errors, the first: ${(firstError as Error).message}\n`);
  return { count: started, seconds: elapsed, perSec: started / elapsed, wrong, errors };
}

/**
 * Checks of distinct new tokens, each of which must be an allow, over one
 * HTTP/2 connection (node:http2: grpc-js would cost the client more CPU than
 * the service spends). Every answer is checked cheaply, one in 64 in full.
 */
export function checkLoop(service: Service, concurrency: number, seconds: number, maxCount: number): Promise<LoopResult> {
  const client = http2Client(service.address);
  const template = new RequestTemplate();
  const token = tokenSeries(randomBytes(6).toString('hex'));
  return loop(concurrency, seconds, maxCount, async (i) => {
    const answer = await client.check(template.withToken(token(i)));
    return isAllow(answer) && (i % 64 !== 0 || decodeDecision(answer).allowed);
  }).finally(() => client.close());
}

/** RFC 7662 POSTs as the service sends them (client_secret_basic, token and hint), straight to the fake server. */
export async function undiciLoop(url: string, concurrency: number, seconds: number): Promise<LoopResult> {
  const target = new URL(url);
  const pool = new Pool(target.origin, { connections: concurrency, pipelining: 1, keepAliveTimeout: 30_000 });
  const headers = {
    accept: 'application/json',
    'content-type': 'application/x-www-form-urlencoded',
    authorization: `Basic ${Buffer.from(`${formEncode(IDP_CLIENT_ID)}:${formEncode(IDP_CLIENT_SECRET)}`).toString('base64')}`,
  };
  const token = tokenSeries(randomBytes(6).toString('hex'));
  try {
    return await loop(concurrency, seconds, Number.MAX_SAFE_INTEGER, async (i) => {
      const body = `token=${formEncode(token(i))}&token_type_hint=access_token`;
      const response = await pool.request({ method: 'POST', path: target.pathname, headers, body });
      const answer = (await response.body.json()) as { active?: unknown };
      return response.statusCode === 200 && answer.active === true;
    });
  } finally {
    await pool.close();
  }
}

export async function measureColdPath(service: Service, idp: Idp, settings: Settings): Promise<ColdPath> {
  const concurrency = settings.coldConcurrency;
  // A short warm-up of both paths (JIT, connection pools), not counted.
  await checkLoop(service, concurrency, 1, 2000);
  await undiciLoop(idp.url, concurrency, 1);

  await idp.reset();
  const before = decisionCounts(await service.metrics());
  // Sampled inside the /metrics reads, so that their cost is not counted.
  const cpuBefore = sampleCpu(service.proc.child.pid!);
  const checks = await checkLoop(service, concurrency, settings.durationS, Number.MAX_SAFE_INTEGER);
  const serviceCpu = cpuWindow(cpuBefore, sampleCpu(service.proc.child.pid!));
  const calls = await idp.count();
  const after = decisionCounts(await service.metrics());
  if (checks.errors > 0 || checks.wrong > 0) throw new Error(`cold path: ${checks.errors} failed RPCs and ${checks.wrong} wrong decisions`);
  const allowed = (after.reasons.ok ?? 0) - (before.reasons.ok ?? 0);
  if (allowed !== checks.count || after.deny !== before.deny) {
    throw new Error(`cold path: the client made ${checks.count} Checks, the service counted ${allowed} allows and ${after.deny - before.deny} denies`);
  }
  const loopBefore = process.cpuUsage();
  const undici = await undiciLoop(idp.url, concurrency, settings.durationS);
  const cpu = process.cpuUsage(loopBefore);
  if (undici.errors > 0 || undici.wrong > 0) throw new Error(`undici loop: ${undici.errors} errors and ${undici.wrong} wrong answers`);
  return {
    checks,
    undici,
    overhead: undici.perSec / checks.perSec,
    serviceCpuMsPerCheck: msPerCheck(serviceCpu, checks.count),
    undiciCpuMsPerRequest: (cpu.user + cpu.system) / 1000 / undici.count,
    introspectionsPerCheck: calls / checks.count,
    concurrency,
  };
}
