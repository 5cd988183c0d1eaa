// A reload keeps the shared tier (and its connections) when its settings did
// not change, and starts a new one, retiring the old, when they did.
import t from 'tap';
import { Authorizer } from '../src/authorizer.js';
import { buildConfig } from '../src/config/load.js';

const config = (redis: Record<string, unknown> | null) =>
  buildConfig(
    {
      endpoints: [{ name: 'as', url: 'http://127.0.0.1:1/introspect', authMethod: 'none' }],
      ...(redis ? { redis } : {}),
    },
    'test',
    { env: {} },
  );
// Nothing listens there: connection failures are the shared tier's own business.
const REDIS = { url: 'redis://127.0.0.1:1', keySecret: 'authorizer-test-key-secret-0123456789' };

t.test('reloads keep or replace the shared tier', async (t) => {
  const first = new Authorizer(config(REDIS));
  t.ok(first.shared, 'built from redis.url');
  t.equal(first.shared!.connected, false);
  const same = new Authorizer(config(REDIS), { previous: first });
  t.equal(same.shared, first.shared, 'same settings: kept');
  t.equal(same.introspector, first.introspector);
  await first.retire();
  const changed = new Authorizer(config({ ...REDIS, keySecret: `${REDIS.keySecret}-rotated` }), { previous: same });
  t.not(changed.shared, same.shared, 'a new secret: a new tier');
  await same.retire();
  const off = new Authorizer(config(null), { previous: changed });
  t.equal(off.shared, null, 'turned off');
  await changed.close();
  await off.close();
});
