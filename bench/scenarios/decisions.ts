/**
 * The service's three hot paths under h2load: a cached allow (scopes checked,
 * eight attributes exposed), a deny without a token, and a deny from the
 * negative cache (an inactive token). Each is checked twice: one Check
 * through grpc-js before the run must give the expected decision (and fills
 * the cache), and after each run the service's own decision counters must
 * have grown by at least h2load's completed requests, all with the expected
 * reason, without a single introspection call.
 */
import { bearerToken, encodeCheckRequest } from '../check-request.js';
import type { H2loadResult } from '../h2load.js';
import type { Settings } from '../settings.js';
import type { Idp } from '../support/idp.js';
import { decodeDecision, rawClient, RequestTemplate } from '../support/raw-client.js';
import { decisionCounts, EXPOSED, type Service } from '../support/service.js';
import { assertClean, bodyFile, grpcLoad } from './load.js';

export type DecisionKind = 'cached' | 'deny' | 'negative';

export interface DecisionRun {
  kind: DecisionKind;
  /** The median of the saturation rounds. */
  sat: H2loadResult;
  /** Saturation req/s of every round, in order. */
  rounds: number[];
  /** The service's CPU ms per Check, median over the saturation rounds. */
  cpuMsPerCheck: number;
  /** Open loop at half of (a)'s saturation rate; null when the baselines were not measured. */
  half: H2loadResult | null;
  /** Decisions the service counted over both runs (warm-ups included). */
  counted: number;
}

interface Expectation {
  token: string | null;
  allow: boolean;
  reason: string;
  httpStatus: number | null;
}

function expectation(kind: DecisionKind): Expectation {
  switch (kind) {
    case 'cached':
      return { token: bearerToken('bench-cached'), allow: true, reason: 'ok', httpStatus: null };
    case 'deny':
      return { token: null, allow: false, reason: 'missing_token', httpStatus: 401 };
    case 'negative':
      return { token: bearerToken('bench-negative', true), allow: false, reason: 'inactive', httpStatus: 401 };
  }
}

/** One Check as Envoy sends it; throws unless the decision is the expected one. */
export async function verifyDecision(address: string, kind: DecisionKind): Promise<void> {
  const want = expectation(kind);
  const client = rawClient(address);
  try {
    const request = want.token === null ? encodeCheckRequest(null) : new RequestTemplate().withToken(want.token);
    const got = decodeDecision(await client.check(request));
    const problems: string[] = [];
    if (got.allowed !== want.allow) problems.push(`allowed=${got.allowed}`);
    if (got.httpStatus !== want.httpStatus) problems.push(`status ${got.httpStatus}`);
    if (want.allow) {
      if (!got.headers['x-auth-subject']) problems.push('no x-auth-subject');
      const missing = EXPOSED.map((name) => `x-auth-${name.replaceAll('_', '-')}`).filter((header) => !(header in got.headers));
      if (missing.length > 0) problems.push(`missing ${missing.join(', ')}`);
    }
    if (problems.length > 0) throw new Error(`${kind}: unexpected decision (${problems.join('; ')})`);
  } finally {
    client.close();
  }
}

/**
 * Checked h2load runs of one kind against the running service: every run must
 * be clean and be accounted for in the service's decision counters with the
 * expected reason; `finish` then checks no introspection was made.
 */
export interface DecisionRunner {
  run(totalRps?: number): Promise<H2loadResult>;
  /** Throws if the endpoint was asked during the runs; the decisions the service counted. */
  finish(): Promise<number>;
}

export async function decisionRunner(kind: DecisionKind, service: Service, idp: Idp, settings: Settings): Promise<DecisionRunner> {
  const want = expectation(kind);
  await verifyDecision(service.address, kind);
  const file = bodyFile(want.token);
  // Counted from the first run, not from here: other kinds' first Checks may come in between.
  let introspectionsBefore: number | undefined;
  let counted = 0;
  return {
    async run(totalRps?: number): Promise<H2loadResult> {
      introspectionsBefore ??= await idp.count();
      const before = decisionCounts(await service.metrics());
      const result = await grpcLoad(service.grpcPort, file, settings, { totalRps, cpuPid: service.proc.child.pid! });
      const after = decisionCounts(await service.metrics());
      assertClean(result, kind);
      const expected = (after.reasons[want.reason] ?? 0) - (before.reasons[want.reason] ?? 0);
      const total = after.allow + after.deny - (before.allow + before.deny);
      if (expected !== total) throw new Error(`${kind}: ${total - expected} decisions with another reason than ${want.reason}`);
      // h2load does not count its warm-up; the service does. Every request h2load saw succeed must be a decision.
      if (expected < result.succeeded) throw new Error(`${kind}: h2load completed ${result.succeeded} requests, the service decided ${expected}`);
      counted += total;
      return result;
    },
    async finish(): Promise<number> {
      if (introspectionsBefore === undefined) return counted;
      const calls = (await idp.count()) - introspectionsBefore;
      if (calls !== 0) throw new Error(`${kind}: ${calls} introspection calls during the runs (the answer should be cached)`);
      return counted;
    },
  };
}
