// A real OpenID provider for the single sign-on tests: panva's certified oidc-provider, over
// TLS with the test's own CA, with one static client and the test's accounts.
//
//   node tests/oidc-provider/server.mjs <port> <cert.pem> <key.pem>
//
// $OIDC_TEST_SPEC (JSON, written by tests/sso.rs):
//   {"issuer": "https://localhost:PORT",
//    "client": {"client_id", "client_secret", "redirect_uris": [...]},
//    "accounts": {"<login>": {claims...}}}
// The login form is oidc-provider's own development form ("devInteractions"): any password
// is accepted for a login listed in "accounts" (the account id is the login, which is also the
// `sub`); consent is granted without asking (a first-party client). Claims are released by
// scope: `profile` → preferred_username, name; `groups` → groups; `department` → department.
// With oidc-provider's defaults the ID token carries only `sub` (and the protocol claims) and
// the rest comes from the userinfo endpoint, as many providers do.
//
// A fresh RSA signing key with a fresh `kid` is made at every start: a restart on the same port
// is a key rotation. Prints "listening <issuer> kid=<kid>" once it accepts connections.

import { readFileSync } from 'node:fs';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import https from 'node:https';
import Provider from 'oidc-provider';

const [port, certFile, keyFile] = process.argv.slice(2);
if (!port || !certFile || !keyFile) {
  console.error('usage: node server.mjs <port> <cert.pem> <key.pem>');
  process.exit(2);
}
const spec = JSON.parse(process.env.OIDC_TEST_SPEC || '{}');
const accounts = spec.accounts || {};

const kid = `k-${randomBytes(6).toString('hex')}`;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };

const configuration = {
  clients: [{
    ...spec.client,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(16).toString('hex')] },
  scopes: ['openid', 'profile', 'groups', 'department'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
    department: ['department'],
  },
  pkce: { methods: ['S256'], required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    if (!Object.hasOwn(accounts, id)) return undefined;
    return {
      accountId: id,
      async claims() {
        return { ...accounts[id], sub: id };
      },
    };
  },
  // A first-party client: consent is given without asking.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile groups department');
    await grant.save();
    return grant;
  },
};

const provider = new Provider(spec.issuer, configuration);
provider.on('server_error', (ctx, err) => console.error('server_error', err));
const server = https.createServer(
  { cert: readFileSync(certFile), key: readFileSync(keyFile) },
  provider.callback(),
);
server.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${spec.issuer} kid=${kid}`);
});
