/**
 * What tracing costs on the hot path (issue 19, item 2): the cached allow of
 * two services side by side, one with tracing.enabled false (the default) and
 * one with it on (parentbased_traceidratio 0.01), exporting over OTLP/HTTP to
 * a sink on loopback that takes every batch and discards it. Three runs per
 * round, interleaved, medians reported:
 * - off, and on at 1 %: the Check without trace context (a new trace each
 *   time, 1 % of them sampled), the bench's CheckRequest less its traceparent
 *   and x-b3-* headers;
 * - on, every Check sampled: the bench's CheckRequest as it is, whose
 *   traceparent says "sampled" (a proxy that samples everything).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { bearerToken, checkRequest, grpcFrame } from '../check-request.js';
import type { H2loadResult } from '../h2load.js';
import type { Settings } from '../settings.js';
import type { Idp } from '../support/idp.js';
import { scratchDir } from '../support/processes.js';
import { decisionCounts, startService, type Service } from '../support/service.js';
import { median } from '../support/stats.js';
import { upstreamDefinitions } from '../../test/support/envoy.js';
import { decisionRunner } from './decisions.js';
import { assertClean, grpcLoad } from './load.js';

export const TRACING_SAMPLE_RATIO = 0.01;

export interface TracingCost {
  off: H2loadResult;
  on: H2loadResult;
  /** Every Check sampled (its parent says so). */
  all: H2loadResult;
  rounds: { off: number[]; on: number[]; all: number[] };
  /** Median CPU ms per Check of each (the service process's, from /proc), the figure the cost is read from. */
  cpuMsPerCheck: { off: number; on: number; all: number };
  sampleRatio: number;
  /** OTLP requests the sink took, and their bytes, over the runs. */
  exports: { requests: number; bytes: number };
}

/** Takes OTLP/HTTP posts and throws them away. */
async function startSink(): Promise<{ server: Server; url: string; counts: { requests: number; bytes: number } }> {
  const counts = { requests: 0, bytes: 0 };
  const server = createServer((request, response) => {
    request.on('data', (chunk: Buffer) => (counts.bytes += chunk.length));
    request.on('end', () => {
      counts.requests += 1;
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, counts };
}

/** The cached-allow CheckRequest without trace context, as a gRPC frame in a file for h2load. */
function untracedBody(): string {
  const request = checkRequest(bearerToken('bench-cached')) as { attributes: { request: { http: { headers: Record<string, string> } } } };
  const headers = request.attributes.request.http.headers;
  for (const name of Object.keys(headers)) if (name === 'traceparent' || name.startsWith('x-b3-')) delete headers[name];
  const method = (upstreamDefinitions()['envoy.service.auth.v3.Authorization'] as unknown as { Check: { requestSerialize(value: object): Buffer } }).Check;
  const file = join(scratchDir('authz-bench-tracing-'), 'untraced.bin');
  writeFileSync(file, grpcFrame(method.requestSerialize(request)));
  return file;
}

/** A saturation run of `file`; every request h2load saw complete must be an allow the service counted. */
async function allowRun(service: Service, file: string, settings: Settings, what: string): Promise<H2loadResult> {
  const before = decisionCounts(await service.metrics());
  const result = await grpcLoad(service.grpcPort, file, settings, { cpuPid: service.proc.child.pid! });
  const after = decisionCounts(await service.metrics());
  assertClean(result, what);
  const allows = (after.reasons.ok ?? 0) - (before.reasons.ok ?? 0);
  if (after.deny !== before.deny) throw new Error(`${what}: ${after.deny - before.deny} denies`);
  if (allows < result.succeeded) throw new Error(`${what}: h2load completed ${result.succeeded} requests, the service allowed ${allows}`);
  return result;
}

export async function measureTracing(idp: Idp, settings: Settings, log: (line: string) => void): Promise<TracingCost> {
  const sink = await startSink();
  const services: Service[] = [];
  try {
    const off = await startService({ idpUrl: idp.url });
    services.push(off);
    const on = await startService({
      idpUrl: idp.url,
      env: {
        TRACING_ENABLED: 'true',
        OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: String(TRACING_SAMPLE_RATIO),
      },
    });
    services.push(on);
    // Fills both caches (and checks the answer is the cached allow) with the bench's usual request.
    const sampledAll = await decisionRunner('cached', on, idp, settings);
    await decisionRunner('cached', off, idp, settings);
    const file = untracedBody();
    const runs: Record<'off' | 'on' | 'all', () => Promise<H2loadResult>> = {
      off: () => allowRun(off, file, settings, 'tracing off'),
      on: () => allowRun(on, file, settings, 'tracing on, 1 %'),
      all: () => sampledAll.run(),
    };
    const results = { off: [] as H2loadResult[], on: [] as H2loadResult[], all: [] as H2loadResult[] };
    const before = { ...sink.counts };
    for (let round = 1; round <= settings.rounds; round += 1) {
      for (const name of ['off', 'on', 'all'] as const) {
        const result = await runs[name]();
        results[name].push(result);
        log(`tracing round ${round}/${settings.rounds}: ${name} ${Math.round(result.reqPerSec)} req/s`);
      }
    }
    await sampledAll.finish();
    const cpuOf = (list: H2loadResult[]) => median(list.map((r) => r.cpu?.msPerRequest ?? Number.NaN).filter(Number.isFinite));
    const pick = (list: H2loadResult[]) => {
      const m = median(list.map((r) => r.reqPerSec));
      return [...list].sort((a, b) => Math.abs(a.reqPerSec - m) - Math.abs(b.reqPerSec - m))[0]!;
    };
    return {
      off: pick(results.off),
      on: pick(results.on),
      all: pick(results.all),
      cpuMsPerCheck: { off: cpuOf(results.off), on: cpuOf(results.on), all: cpuOf(results.all) },
      rounds: { off: results.off.map((r) => r.reqPerSec), on: results.on.map((r) => r.reqPerSec), all: results.all.map((r) => r.reqPerSec) },
      sampleRatio: TRACING_SAMPLE_RATIO,
      exports: { requests: sink.counts.requests - before.requests, bytes: sink.counts.bytes - before.bytes },
    };
  } finally {
    for (const service of services.reverse()) await service.stop();
    await new Promise<void>((resolve) => {
      sink.server.close(() => resolve());
      sink.server.closeAllConnections();
    });
  }
}
