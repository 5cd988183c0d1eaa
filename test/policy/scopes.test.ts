import t from 'tap';
import { compileScopes, insufficientScopeDescription, scopesSatisfied } from '../../src/policy/scopes.js';

t.test('compileScopes', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['', []],
    ['   ', []],
    ['read', ['read']],
    ['read write', ['read', 'write']],
    ['  read   write  ', ['read', 'write']],
    ['read read write', ['read', 'write']],
    ['orders:read https://api.example.com/scope!#$%&()', ['orders:read', 'https://api.example.com/scope!#$%&()']],
  ];
  for (const [text, want] of cases) t.same(compileScopes(text), want, JSON.stringify(text));
  for (const bad of ['read "write"', 'a\\b', 'read\twrite', 'read\nwrite', 'lecture écrire']) {
    t.throws(() => compileScopes(bad), { name: 'TypeError', message: /scope tokens separated by spaces/ }, JSON.stringify(bad));
  }
});

t.test('scopesSatisfied: AND, OR, string and array claims', async (t) => {
  const cases: Array<[string, string[], 'AND' | 'OR', unknown, boolean]> = [
    ['nothing required, no claim', [], 'AND', undefined, true],
    ['nothing required, OR', [], 'OR', null, true],
    ['AND, all present', ['read', 'write'], 'AND', 'write admin read', true],
    ['AND, one missing', ['read', 'write'], 'AND', 'read admin', false],
    ['AND, none', ['read'], 'AND', '', false],
    ['OR, one present', ['read', 'write'], 'OR', 'admin write', true],
    ['OR, none present', ['read', 'write'], 'OR', 'admin', false],
    ['whole tokens only: prefix', ['read'], 'AND', 'reader', false],
    ['whole tokens only: suffix', ['read'], 'AND', 'unread', false],
    ['whole tokens only: inner', ['read'], 'AND', 'x unread reader y', false],
    ['found after a partial match', ['read'], 'AND', 'reader read', true],
    ['found at the end', ['read'], 'AND', 'write read', true],
    ['several spaces', ['read', 'write'], 'AND', 'read   write', true],
    ['tab is not a separator (RFC 6749: SP)', ['read'], 'AND', 'write\tread', false],
    ['case-sensitive', ['Read'], 'AND', 'read', false],
    ['array claim, AND', ['read', 'write'], 'AND', ['write', 'read'], true],
    ['array claim, AND missing', ['read', 'write'], 'AND', ['write'], false],
    ['array claim, OR', ['read', 'write'], 'OR', ['admin', 'write'], true],
    ['array claim holds whole scopes, no splitting', ['read'], 'AND', ['read write'], false],
    ['array of non-strings', ['1'], 'AND', [1], false],
    ['number claim', ['1'], 'AND', 1, false],
    ['object claim', ['read'], 'OR', { read: true }, false],
    ['missing claim', ['read'], 'OR', undefined, false],
    ['scope longer than the claim', ['read-write'], 'AND', 'read', false],
  ];
  for (const [name, required, criteria, claim, want] of cases) t.equal(scopesSatisfied(required, criteria, claim), want, name);
});

t.test('descriptions are fixed sentences safe in a quoted parameter', async (t) => {
  for (const criteria of ['AND', 'OR'] as const) {
    const text = insufficientScopeDescription(criteria);
    t.match(text, /^[a-z ]+$/, criteria);
  }
  t.not(insufficientScopeDescription('AND'), insufficientScopeDescription('OR'));
});
