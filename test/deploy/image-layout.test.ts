// No Docker engine here, so the image is played: its runtime stage's layout
// (/app/dist/src, /app/proto, /app/package.json, production dependencies
// only) is laid out in a temporary folder, started with the Dockerfile's
// ENTRYPOINT and CMD, the Deployment's environment and the ConfigMap's
// configuration, and probed the way Kubernetes, Prometheus and Envoy would:
// the Deployment's probe paths, the ServiceMonitor's path and Envoy's gRPC
// health check service. It must write nothing into its own folder.
import t from 'tap';
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import YAML from 'yaml';
import { healthClientConstructor } from '../support/envoy.js';
import { cleanEnv, ensureBuilt, freePort, httpGet, logLines, ROOT, within, type Exit } from '../support/service-process.js';
import { DEPLOY, listFiles } from './lib/files.js';
import { execForm, parseDockerfile, stages } from './lib/dockerfile.js';
import { readYamlDocuments } from './lib/kubernetes.js';

const runtime = stages(parseDockerfile(readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8'))).at(-1)!;
const entrypoint = execForm(runtime.instructions.find((i) => i.keyword === 'ENTRYPOINT')!.args)!;
const cmd = execForm(runtime.instructions.find((i) => i.keyword === 'CMD')!.args)!;
const [deployment] = readYamlDocuments(join(DEPLOY, 'kubernetes', 'base', 'deployment.yaml')) as any[];
const container = deployment.spec.template.spec.containers[0];
const [monitor] = readYamlDocuments(join(DEPLOY, 'kubernetes', 'base', 'servicemonitor.yaml')) as any[];
const envoy = YAML.parse(readFileSync(join(DEPLOY, 'envoy', 'envoy.yaml'), 'utf8')) as any;
const healthService: string = envoy.static_resources.clusters[0].health_checks[0].grpc_health_check.service_name;

/** Top-level packages npm ci --omit=dev installs, from the lock file (offline). */
function productionPackages(): string[] {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  return Object.entries(lock.packages)
    .filter(([path, entry]) => /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path) && !entry.dev)
    .map(([path]) => path.slice('node_modules/'.length));
}

/** /app as the runtime stage builds it; node_modules links to the project's copies of the production packages. */
function layOut(app: string): void {
  const copies = runtime.instructions.filter((i) => i.keyword === 'COPY').map((i) => i.args);
  t.ok(copies.some((c) => c.endsWith('./dist/src')) && copies.some((c) => c.startsWith('proto ')), 'the Dockerfile copies what is laid out here');
  cpSync(join(ROOT, 'dist', 'src'), join(app, 'dist', 'src'), { recursive: true });
  cpSync(join(ROOT, 'proto'), join(app, 'proto'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(app, 'package.json'));
  for (const name of productionPackages()) {
    mkdirSync(join(app, 'node_modules', name, '..'), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules', name), join(app, 'node_modules', name), 'dir');
  }
}

t.test('the image layout runs the service as the Deployment configures it', async (t) => {
  ensureBuilt();
  const dir = t.testdir({ app: {}, etc: {}, secrets: { 'client-secret': 'example-secret\n', 'admin-token': 'example-admin-token-0123456789\n' } });
  const app = join(dir, 'app');
  layOut(app);

  // The ConfigMap and the Secret, mounted where the Deployment mounts them (moved under dir).
  const configPath = cmd[cmd.indexOf('--config') + 1]!;
  const mounts = Object.fromEntries(container.volumeMounts.map((m: any) => [m.name, m.mountPath]));
  t.equal(configPath, `${mounts.config}/config.yaml`, 'CMD reads the mounted ConfigMap');
  const config = readFileSync(join(DEPLOY, 'kubernetes', 'base', 'config.yaml'), 'utf8').replaceAll(mounts.credentials, join(dir, 'secrets'));
  writeFileSync(join(dir, 'etc', 'config.yaml'), config);
  const before = listFiles(app).length;

  const env: Record<string, string> = Object.fromEntries(container.env.map((e: any) => [e.name, e.value]));
  const opsPort = await freePort();
  const argv = [...entrypoint.slice(1), ...cmd].map((a) => (a === configPath ? join(dir, 'etc', 'config.yaml') : a));
  t.equal(entrypoint[0], 'node');
  const child = spawn(process.execPath, argv, {
    cwd: app,
    env: cleanEnv({ ...env, LOG_LEVEL: 'info', GRPC_HOST: '127.0.0.1', GRPC_PORT: '0', OPS_HOST: '127.0.0.1', OPS_PORT: String(opsPort) }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  const serving = await within(
    (async () => {
      for (;;) {
        const line = logLines(out).find((l) => l.msg === 'serving');
        if (line) return line;
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${err}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    })(),
    15_000,
    'serving',
  );
  const grpcPort = serving.grpcPort as number;

  const probe = (p: any) => httpGet(opsPort, p.httpGet.path);
  t.equal(container.readinessProbe.httpGet.port, 'ops');
  t.equal((await probe(container.readinessProbe)).status, 200, `readiness ${container.readinessProbe.httpGet.path}`);
  t.equal((await probe(container.livenessProbe)).status, 200, `liveness ${container.livenessProbe.httpGet.path}`);
  const metrics = await httpGet(opsPort, monitor.spec.endpoints[0].path);
  t.equal(metrics.status, 200, `ServiceMonitor ${monitor.spec.endpoints[0].path}`);
  t.match(metrics.body, /^# HELP /m, 'Prometheus text');

  const Health = healthClientConstructor();
  const health = new Health(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
  const status = await new Promise<string>((resolve, reject) =>
    (health as unknown as Record<string, Function>).Check!(
      { service: healthService },
      { deadline: Date.now() + 5000 },
      (error: Error | null, response: { status: string }) => (error ? reject(error) : resolve(response.status)),
    ),
  );
  health.close();
  t.equal(status, 'SERVING', `Envoy's health check (${healthService})`);

  child.kill('SIGTERM');
  const exit = await within(exited, 15_000, 'exit after SIGTERM');
  t.same(exit, { code: 0, signal: null }, 'SIGTERM (the STOPSIGNAL) drains and exits 0');
  t.equal(listFiles(app).length, before, 'wrote nothing into /app (read-only root filesystem)');
});

t.test('--version reads /app/package.json', async (t) => {
  ensureBuilt();
  const dir = t.testdir({ app: {} });
  const app = join(dir, 'app');
  layOut(app);
  const child = spawn(process.execPath, [...entrypoint.slice(1), '--version'], { cwd: app, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  const exit = await within(new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal }))), 15_000, '--version');
  t.equal(exit.code, 0);
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  t.equal(out.trim(), version);
});
