/**
 * The service under test as its own process, `node dist/src/main.js --config
 * FILE`, with a configuration written to a temporary directory: loopback
 * only, log level warn with decision lines off (so there is no 'serving' log
 * line: ports are picked here, and the gRPC health Check says when it is up),
 * and one policy of the usual shape (scopes required, eight introspection
 * members exposed as headers).
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { healthClientConstructor } from '../../test/support/envoy.js';
import { freePort, httpGet, samples, sleep, tryConnect, type Proc } from '../../test/support/service-process.js';
import { MAIN } from './paths.js';
import { isRunning, scratchDir, startNode, stopProc } from './processes.js';

/** What the table says about how the service was run. */
export const SERVICE_LOGGING = 'log.level warn, log.decisions none';

/** The client secret the service authenticates to the fake authorization server with (client_secret_basic). */
export const IDP_CLIENT_ID = 'ext-authz';
export const IDP_CLIENT_SECRET = 'bench-secret-0123456789';

/** The eight members the policy exposes upstream (of the twelve the fake authorization server answers). */
export const EXPOSED = ['sub', 'client_id', 'username', 'scope', 'aud', 'iss', 'jti', 'token_type'];

export interface ServiceOptions {
  idpUrl: string;
  maxCacheEntries?: number;
  /** Seconds an inactive answer is reused (long enough to outlast a scenario). */
  negativeTTL?: number;
  grpcPort: number;
  opsPort: number;
  /** server.workers, written only when given. */
  workers?: number;
  /** server.http.port: the HTTP mode on, at this port. */
  httpPort?: number;
  nodeFlags?: string[];
  env?: Record<string, string>;
  /** Validate JWT access tokens locally (kind: jwt) with the keys at this JWKS URL, instead of introspecting at idpUrl. */
  jwt?: { issuer: string; jwksUri: string; audience: string };
}

export interface Service {
  proc: Proc;
  grpcPort: number;
  opsPort: number;
  address: string;
  /** The samples of /metrics. */
  metrics(): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

export function serviceConfig(options: ServiceOptions): string {
  return [
    'server:',
    `  grpc: { host: 127.0.0.1, port: ${options.grpcPort} }`,
    `  ops: { host: 127.0.0.1, port: ${options.opsPort} }`,
    '  shutdownTimeout: 1000',
    ...(options.workers === undefined ? [] : [`  workers: ${options.workers}`]),
    ...(options.httpPort === undefined ? [] : [`  http: { enabled: true, host: 127.0.0.1, port: ${options.httpPort} }`]),
    'log: { level: warn, decisions: none }',
    `cache: { maxCacheEntries: ${options.maxCacheEntries ?? 10_000}, validatedTokenTTL: 600, negativeTTL: ${options.negativeTTL ?? 600}, maxNegativeEntries: 1000 }`,
    'endpoints:',
    '  - name: idp',
    ...(options.jwt
      ? ['    kind: jwt', `    issuer: "${options.jwt.issuer}"`, `    jwksUri: "${options.jwt.jwksUri}"`, `    audience: "${options.jwt.audience}"`]
      : [
          `    url: "${options.idpUrl}"`,
          '    authMethod: client_secret_basic',
          `    clientId: ${IDP_CLIENT_ID}`,
          '    clientSecretEnv: BENCH_IDP_SECRET',
        ]),
    'policies:',
    '  - name: api',
    '    endpoint: idp',
    '    scopes: "orders:read"',
    '    exposeHeaders: true',
    `    attributes: [${EXPOSED.map((name) => `"+${name}"`).join(', ')}, "-*"]`,
    '',
  ].join('\n');
}

/** Write the configuration to a new temporary directory (the caller removes it). */
export function writeServiceConfig(options: ServiceOptions): { dir: string; file: string } {
  const dir = scratchDir('authz-bench-');
  const file = join(dir, 'config.yaml');
  writeFileSync(file, serviceConfig(options));
  return { dir, file };
}

/** Spawn the service without waiting for it. */
export function spawnService(file: string, options: ServiceOptions): Proc {
  return startNode(MAIN, ['--config', file], {
    nodeFlags: options.nodeFlags ?? [],
    env: { BENCH_IDP_SECRET: IDP_CLIENT_SECRET, ...options.env },
  });
}

let Health: grpc.ServiceClientConstructor | undefined;

/** The gRPC health status of the whole server, on a fresh channel (no reconnect back-off carried over). */
export function healthStatus(address: string): Promise<string> {
  Health ??= healthClientConstructor();
  const client = new Health(address, grpc.credentials.createInsecure());
  return new Promise<string>((resolve) => {
    (client as unknown as Record<string, Function>).Check!(
      { service: '' },
      { deadline: Date.now() + 1000 },
      (error: grpc.ServiceError | null, response: { status: string }) => resolve(error ? `error ${error.code}` : response.status),
    );
  }).finally(() => client.close());
}

/**
 * Poll every 5 ms until the health Check answers SERVING: a TCP connect
 * first, then a Check on a fresh channel. Returns the milliseconds from `since`.
 */
export async function waitUntilServing(proc: Proc, port: number, since: number, limitMs = 15_000): Promise<number> {
  Health ??= healthClientConstructor();
  for (;;) {
    if (!isRunning(proc)) throw new Error(`the service exited (${proc.child.exitCode ?? proc.child.signalCode}): ${proc.stderr().slice(-500)}`);
    if (performance.now() - since > limitMs) throw new Error(`the service was not SERVING within ${limitMs} ms: ${proc.stderr().slice(-500)}`);
    if ((await tryConnect(port, 200)) === 'connected' && (await healthStatus(`127.0.0.1:${port}`)) === 'SERVING') {
      return performance.now() - since;
    }
    await sleep(5);
  }
}

export type StartOptions = Omit<ServiceOptions, 'grpcPort' | 'opsPort'>;

export async function startService(start: StartOptions): Promise<Service> {
  const options: ServiceOptions = { ...start, grpcPort: await freePort(), opsPort: await freePort() };
  const { dir, file } = writeServiceConfig(options);
  const proc = spawnService(file, options);
  try {
    await waitUntilServing(proc, options.grpcPort, performance.now());
  } catch (error) {
    await stopProc(proc);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    proc,
    grpcPort: options.grpcPort,
    opsPort: options.opsPort,
    address: `127.0.0.1:${options.grpcPort}`,
    async metrics() {
      const answer = await httpGet(options.opsPort, '/metrics', 5000);
      if (answer.status !== 200) throw new Error(`/metrics answered ${answer.status}`);
      return samples(answer.body);
    },
    async stop() {
      await stopProc(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Decisions the service counted, from its /metrics. */
export function decisionCounts(metrics: Map<string, number>): { allow: number; deny: number; reasons: Record<string, number> } {
  let allow = 0;
  let deny = 0;
  const reasons: Record<string, number> = {};
  for (const [name, value] of metrics) {
    if (!name.startsWith('authz_check_decisions_total{')) continue;
    if (name.includes('decision="allow"')) allow += value;
    else deny += value;
    const reason = /reason="([^"]*)"/.exec(name)?.[1] ?? '?';
    reasons[reason] = (reasons[reason] ?? 0) + value;
  }
  return { allow, deny, reasons };
}
