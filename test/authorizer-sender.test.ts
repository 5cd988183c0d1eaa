// A reload must not forget the DPoP proofs already accepted: the replay
// records (and the key cache) pass to the new authorizer while the dpop and
// redis settings stay the same.
import t from 'tap';
import { Authorizer } from '../src/authorizer.js';
import { buildConfig } from '../src/config/load.js';

const raw = (dpop: Record<string, unknown> = {}) =>
  buildConfig(
    { endpoints: [{ name: 'as', url: 'https://as.example.com/introspect', clientId: 'a', clientSecret: 'b' }], dpop },
    'test',
    { env: {} },
  );

t.test('the sender context survives a reload that keeps its settings', async (t) => {
  const first = new Authorizer(raw());
  t.ok(await first.sender.replay.claim('proof-1', Date.now() + 60_000));
  const second = new Authorizer(raw(), { previous: first });
  await first.retire();
  t.equal(second.sender, first.sender, 'handed over');
  t.notOk(await second.sender.replay.claim('proof-1', Date.now() + 60_000), 'a proof accepted before the reload is still a replay');

  const third = new Authorizer(raw({ replayEntries: 2000 }), { previous: second });
  t.not(third.sender, second.sender, 'new settings, new store');
  await second.retire();
  await third.close();
});
