/**
 * `make soak`: the service as its own process under sustained load for a
 * bounded time (SOAK_SECONDS, default 120), with a mix of cached, new,
 * inactive and faulty-endpoint tokens. Reports memory over time and checks:
 * no failed RPC, no allow without an active answer, and the service's own
 * decision counts equal the client's. Exits 1 when a check fails.
 * Not part of `make test`: it takes minutes and its figures depend on the machine.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { connectEnvoy, summarize } from '../support/envoy.js';
import { startFakeAuthorizationServer } from '../support/fake-authorization-server.js';

const SECONDS = Math.min(Math.max(Number(process.env.SOAK_SECONDS ?? 120), 10), 900);
const CONCURRENCY = 16;
const SAMPLE_EVERY_MS = 5000;
const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'main.js');

type Kind = 'cached' | 'new' | 'inactive' | 'faulty';
const KINDS: Array<[Kind, number]> = [
  ['cached', 0.6],
  ['new', 0.15],
  ['inactive', 0.15],
  ['faulty', 0.1],
];

function pick(): Kind {
  let r = Math.random();
  for (const [kind, share] of KINDS) {
    if ((r -= share) < 0) return kind;
  }
  return 'cached';
}

const token = (prefix: string) => `${prefix}${randomBytes(24).toString('base64url')}`;

async function scrape(opsPort: number): Promise<Map<string, number>> {
  const response = await request(`http://127.0.0.1:${opsPort}/metrics`);
  const map = new Map<string, number>();
  for (const line of (await response.body.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    map.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return map;
}

function sum(metrics: Map<string, number>, prefix: string, label: string): number {
  let total = 0;
  for (const [name, value] of metrics) if (name.startsWith(prefix) && name.includes(label)) total += value;
  return total;
}

async function main(): Promise<number> {
  // The fake endpoint: tokens starting with "ok" are active, "bad" inactive, "fault" a 500.
  const fake = await startFakeAuthorizationServer((req) => {
    const t = req.body.get('token') ?? '';
    if (t.startsWith('ok')) return { json: { active: true, sub: `user-${t.slice(2, 8)}`, scope: 'read', exp: Math.floor(Date.now() / 1000) + 3600 } };
    if (t.startsWith('fault')) return { status: 500, body: 'boom' };
    return { json: { active: false } };
  });
  const dir = mkdtempSync(join(tmpdir(), 'authz-soak-'));
  const config = join(dir, 'config.yaml');
  writeFileSync(
    config,
    [
      'server:',
      '  grpc: { host: 127.0.0.1, port: 0 }',
      '  ops: { host: 127.0.0.1, port: 0 }',
      'log: { level: info, decisions: none }',
      'cache: { maxCacheEntries: 20000, validatedTokenTTL: 600, negativeTTL: 10 }',
      'endpoints:',
      `  - { name: idp, url: "${fake.url}", authMethod: none, retries: 0 }`,
      '',
    ].join('\n'),
  );
  const env = { ...process.env };
  for (const name of ['LOG_LEVEL', 'GRPC_PORT', 'GRPC_HOST', 'OPS_PORT', 'OPS_HOST', 'NODE_OPTIONS']) delete env[name];
  const child = spawn(process.execPath, [MAIN, '--config', config], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let failures = 0;
  try {
    const ports = await new Promise<{ grpcPort: number; opsPort: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the service did not start within 10 s')), 10_000);
      child.once('exit', (code) => reject(new Error(`the service exited (${code})`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (!line.includes('"serving"')) return;
        clearTimeout(timer);
        resolve(JSON.parse(line) as { grpcPort: number; opsPort: number });
      });
    });
    const envoy = connectEnvoy(`127.0.0.1:${ports.grpcPort}`);
    const cached = Array.from({ length: 200 }, () => token('ok'));
    const counts = { allow: 0, deny: 0, rpcErrors: 0, wrongAllows: 0 };
    const memory: Array<{ t: number; rssMiB: number; heapMiB: number }> = [];

    const started = Date.now();
    const stopAt = started + SECONDS * 1000;
    const worker = async () => {
      while (Date.now() < stopAt) {
        const kind = pick();
        const t =
          kind === 'cached' ? cached[Math.floor(Math.random() * cached.length)]! : kind === 'new' ? token('ok') : kind === 'inactive' ? token('bad') : token('fault');
        try {
          const s = summarize(await envoy.check({ headers: { authorization: `Bearer ${t}` }, timeoutMs: 2000 }));
          if (s.allowed) {
            counts.allow += 1;
            if (!t.startsWith('ok')) counts.wrongAllows += 1;
          } else counts.deny += 1;
        } catch {
          counts.rpcErrors += 1;
        }
      }
    };
    const sampler = (async () => {
      while (Date.now() < stopAt) {
        const m = await scrape(ports.opsPort);
        memory.push({
          t: Math.round((Date.now() - started) / 1000),
          rssMiB: (m.get('process_resident_memory_bytes') ?? 0) / 2 ** 20,
          heapMiB: (m.get('nodejs_heap_size_used_bytes') ?? 0) / 2 ** 20,
        });
        await sleep(SAMPLE_EVERY_MS);
      }
    })();
    await Promise.all([...Array.from({ length: CONCURRENCY }, worker), sampler]);
    envoy.close();

    const final = await scrape(ports.opsPort);
    const served = { allow: sum(final, 'authz_check_decisions_total{', 'decision="allow"'), deny: sum(final, 'authz_check_decisions_total{', 'decision="deny"') };
    const total = counts.allow + counts.deny;

    console.log(`soak: ${SECONDS} s, ${CONCURRENCY} concurrent Checks, ${total} Checks (${Math.round(total / SECONDS)}/s)`);
    console.log('memory (from the service\'s /metrics):');
    for (const s of memory) console.log(`  t=${String(s.t).padStart(4)} s  rss ${s.rssMiB.toFixed(1)} MiB  heap ${s.heapMiB.toFixed(1)} MiB`);
    // Trend after warm-up: the last third of the samples against the middle third.
    const third = Math.floor(memory.length / 3);
    if (third >= 1) {
      const mean = (xs: typeof memory) => xs.reduce((a, s) => a + s.heapMiB, 0) / xs.length;
      const middle = mean(memory.slice(third, 2 * third));
      const last = mean(memory.slice(2 * third));
      console.log(`heap trend after warm-up: ${middle.toFixed(1)} -> ${last.toFixed(1)} MiB (${(((last - middle) / middle) * 100).toFixed(1)}%)`);
    }
    const check = (ok: boolean, what: string) => {
      console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
      if (!ok) failures += 1;
    };
    check(counts.rpcErrors === 0, `failed RPCs: ${counts.rpcErrors} (must be 0)`);
    check(counts.wrongAllows === 0, `allows without an active answer: ${counts.wrongAllows} (must be 0)`);
    check(served.allow === counts.allow && served.deny === counts.deny, `service counted allow ${served.allow}/deny ${served.deny}; client counted ${counts.allow}/${counts.deny}`);
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)));
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return failures === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`soak failed: ${(error as Error).message}`);
    process.exit(1);
  },
);
