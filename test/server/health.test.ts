// grpc.health.v1 through a real client: statuses, and Watch streams that must
// not hold a graceful shutdown open until its deadline.
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import { buildConfig } from '../../src/config/load.js';
import { startApp } from '../../src/app.js';
import { createLogger } from '../../src/observability/logger.js';
import { healthClientConstructor } from '../support/envoy.js';

async function start(t: Test) {
  const config = buildConfig({
    server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, shutdownTimeout: 5000 },
    endpoints: [{ name: 'idp', url: 'http://127.0.0.1:9/introspect', authMethod: 'none' }],
  });
  const app = await startApp(config, createLogger('silent'));
  t.teardown(() => app.stop());
  const Health = healthClientConstructor();
  const client = new Health(`127.0.0.1:${app.grpc.port}`, grpc.credentials.createInsecure()) as unknown as {
    Watch(request: { service: string }): grpc.ClientReadableStream<{ status: string }>;
    close(): void;
  };
  t.teardown(() => client.close());
  return { app, client };
}

function watch(client: { Watch(request: { service: string }): grpc.ClientReadableStream<{ status: string }> }, service: string) {
  const stream = client.Watch({ service });
  const statuses: string[] = [];
  stream.on('data', (message) => statuses.push(message.status));
  const ended = new Promise<string>((resolve) => {
    stream.on('error', (error: grpc.ServiceError) => resolve(`error ${error.code}`));
    stream.on('end', () => resolve('end'));
  });
  return { statuses, ended };
}

async function until(check: () => boolean, ms = 2000): Promise<void> {
  const stopAt = Date.now() + ms;
  while (!check() && Date.now() < stopAt) await new Promise((r) => setTimeout(r, 10));
}

t.test('open Watch streams end on shutdown instead of holding it to shutdownTimeout', async (t) => {
  const { app, client } = await start(t);
  const overall = watch(client, '');
  const unknown = watch(client, 'no.such.Service');
  await until(() => overall.statuses.length === 1 && unknown.statuses.length === 1);
  t.same(overall.statuses, ['SERVING']);
  t.same(unknown.statuses, ['SERVICE_UNKNOWN']);

  const started = Date.now();
  await app.stop();
  const took = Date.now() - started;
  t.ok(took < 2500, `stop took ${took} ms, well under the 5000 ms shutdownTimeout`);
  t.equal(await overall.ended, 'end', 'the Watch stream of a known service ends cleanly');
  t.same(overall.statuses, ['SERVING', 'NOT_SERVING'], 'watchers were told NOT_SERVING first');
  t.equal(await unknown.ended, 'end', 'the Watch stream of an unknown service ends too');
});
