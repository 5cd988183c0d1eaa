// The HTTP edge's rendering of a Decision: what a proxy receives for an allow and for a deny.
import t from 'tap';
import type { Deny } from '../../src/decision.js';
import { renderHttpAnswer, STATUS_HEADER } from '../../src/http/response.js';

const nonceDeny: Deny = {
  allow: false,
  reason: 'use_dpop_nonce',
  policy: 'p',
  status: 401,
  challenge: 'DPoP realm="api", algs="ES256", error="use_dpop_nonce"',
  bearerError: 'use_dpop_nonce',
  description: 'the DPoP proof must carry the nonce this server supplies',
  endpoint: null,
  cache: 'none',
  headers: [{ name: 'dpop-nonce', value: 'n-123' }],
};

t.test('a deny carries its challenge, its status and the headers the client needs (DPoP-Nonce)', async (t) => {
  const answer = renderHttpAnswer(nonceDeny);
  t.equal(answer.status, 401);
  const headers = new Map(answer.headers);
  t.equal(headers.get('www-authenticate'), nonceDeny.challenge);
  t.equal(headers.get('dpop-nonce'), 'n-123', 'the nonce reaches the client, as the gRPC edge sends it in denied_response.headers');
  t.equal(headers.get(STATUS_HEADER), '401');
  t.same(JSON.parse(answer.body), { error: 'use_dpop_nonce', error_description: nonceDeny.description });
});

t.test('a deny without extra headers has none', async (t) => {
  const { headers: _omitted, ...plain } = nonceDeny;
  const answer = renderHttpAnswer(plain);
  t.notOk(answer.headers.some(([name]) => name === 'dpop-nonce'));
});
