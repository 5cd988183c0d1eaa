import t from 'tap';
import { bindingOf } from '../../src/credentials/sender-binding.js';
import type { Claims } from '../../src/introspection/result.js';

const claims = (value: Record<string, unknown>): Claims => Object.freeze(Object.setPrototypeOf({ active: true, ...value }, null));
const PRINT = 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs';

t.test('cnf read into one binding, or none, or one this service cannot check', async (t) => {
  t.equal(bindingOf(claims({})), 'none');
  t.equal(bindingOf(claims({ cnf: {} })), 'none', 'an empty cnf binds nothing');
  t.same(bindingOf(claims({ cnf: { jkt: PRINT } })), { method: 'dpop', thumbprint: PRINT });
  t.same(bindingOf(claims({ cnf: { 'x5t#S256': PRINT } })), { method: 'mtls', thumbprint: PRINT });
  for (const cnf of [null, 'x', [PRINT], { jkt: 5 }, { jkt: `${PRINT}=` }, { jkt: 'short' }, { jwk: { kty: 'EC' } }, { jkt: PRINT, 'x5t#S256': PRINT }]) {
    t.equal(bindingOf(claims({ cnf })), 'unsupported', JSON.stringify(cnf));
  }
  const inherited = claims({ cnf: Object.create({ jkt: PRINT }) });
  t.equal(bindingOf(inherited), 'none', 'only own members count');
});
