// The example configuration users copy must load with the service's own loader.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { parseConfig } from '../../src/config/load.js';

t.test('deploy/config.example.yaml is a valid configuration', async (t) => {
  const path = new URL('../../deploy/config.example.yaml', import.meta.url);
  const dir = t.testdir({ 'client-secret': 'example-secret\n' });
  // The secret file lives where Kubernetes would mount it; point it at a test copy.
  const text = readFileSync(path, 'utf8').replace('/var/run/secrets/introspection/client-secret', `${dir}/client-secret`);
  const config = parseConfig(text, 'config.example.yaml', { env: {} });
  t.equal(config.server.grpc.port, 9001);
  t.equal(config.endpoints[0]!.authMethod, 'client_secret_basic');
  t.equal(config.endpoints[0]!.clientSecret!.reveal(), 'example-secret');
  t.equal(config.defaultPolicy, 'default');
  t.equal(config.policies[0]!.mappedIdentity.source, '{sub|username|client_id}');
});
