// The request of one introspection, built without sockets: method, path,
// headers and body for each way an endpoint may want it.
import t from 'tap';
import { buildConfig, type EndpointConfig } from '../../src/config/load.js';
import { Secret } from '../../src/config/secret.js';
import { formEncode, RequestTemplate } from '../../src/introspection/endpoint-request.js';

function endpoint(options: Record<string, unknown>): EndpointConfig {
  return buildConfig({ endpoints: [{ name: 'as', url: 'https://as.example.com/introspect?tenant=t1', ...options }] }, 'test', { env: {} })
    .endpoints[0]!;
}

t.test('POST, RFC 7662: the token and hint in a form body, the URL\'s query kept', async (t) => {
  const request = new RequestTemplate(endpoint({ clientId: 'id', clientSecret: 's' })).build('a b+c');
  t.same(request, {
    method: 'POST',
    path: '/introspect?tenant=t1',
    headers: {
      accept: 'application/json',
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from('id:s').toString('base64')}`,
    },
    body: 'token=a+b%2Bc&token_type_hint=access_token',
  });
});

t.test('GET, token info: everything in the query, no body, no content type', async (t) => {
  const request = new RequestTemplate(
    endpoint({ method: 'GET', tokenParameter: 'access_token', tokenTypeHint: '', authMethod: 'none', clientId: 'pub' }),
  ).build('tok/1');
  t.same(request, {
    method: 'GET',
    path: '/introspect?tenant=t1&access_token=tok%2F1&client_id=pub',
    headers: { accept: 'application/json' },
    body: null,
  });
  const bare = new RequestTemplate({ ...endpoint({ method: 'GET', authMethod: 'none' }), url: 'https://as.example.com/info' });
  t.equal(bare.build('x').path, '/info?token=x&token_type_hint=access_token', 'a URL without a query');
});

t.test('static headers come first; the protocol\'s own win', async (t) => {
  const config = { ...endpoint({ authMethod: 'client_secret_bearer', clientSecret: 'b' }), headers: { 'x-tenant': new Secret('acme') } };
  const request = new RequestTemplate(config).build('x');
  t.same(Object.keys(request.headers), ['accept', 'x-tenant', 'content-type', 'authorization']);
  t.equal(request.headers.authorization, 'Bearer b');
});

t.test('clientIdHeader: the client id of each call', async (t) => {
  const template = new RequestTemplate(endpoint({ authMethod: 'client_secret_post', clientIdHeader: 'x-client-id', clientSecret: 's&t' }));
  t.equal(template.build('x', 'one').body, 'token=x&token_type_hint=access_token&client_id=one&client_secret=s%26t');
  t.equal(template.build('x', 'two two').body, 'token=x&token_type_hint=access_token&client_id=two+two&client_secret=s%26t');
  const fixed = new RequestTemplate(endpoint({ authMethod: 'client_secret_post', clientId: 'fixed', clientSecret: 's' }));
  t.match(fixed.build('x', 'ignored').body, /client_id=fixed/, 'without clientIdHeader the configured client id is used');
});

t.test('formEncode', async (t) => {
  t.equal(formEncode('a b+c&d=e/f~'), 'a+b%2Bc%26d%3De%2Ff~');
});
