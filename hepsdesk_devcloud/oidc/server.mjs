// The development single sign-on of hepsdesk: a real OpenID Connect provider
// (panva/oidc-provider, OpenID certified) with a username/password login page and the
// claims a facility SSO gives hepsdesk: groups and proposals.
//
// Configuration comes from the JSON file named by HEPSDESK_OIDC_CONFIG:
//   {"issuer": "http://127.0.0.1:9400", "port": 9400, "cookie_keys": ["..."],
//    "clients": [{"client_id", "client_secret", "redirect_uris": [...]}],
//    "users": {"alice": {"password", "name", "email", "groups": [...], "proposals": [...],
//                        "posix": {"uidNumber", "gidNumber", "homeDirectory", "loginShell"}}}}
// The file is read again for every login, so tests and `hepsdesk demo` can add users
// without restarting the provider. Listens on 127.0.0.1 only.

import fs from 'node:fs';
import http from 'node:http';
import querystring from 'node:querystring';

import Provider from 'oidc-provider';

const configPath = process.env.HEPSDESK_OIDC_CONFIG;
if (!configPath) {
  console.error('hepsdesk-oidc: HEPSDESK_OIDC_CONFIG is not set');
  process.exit(2);
}
const readConfig = () => JSON.parse(fs.readFileSync(configPath, 'utf8'));
const config = readConfig();
const SCOPES = ['openid', 'offline_access', 'profile', 'email', 'groups', 'proposals', 'posix'];

function userClaims(username) {
  const user = readConfig().users[username];
  if (!user) return undefined;
  return {
    sub: username,
    preferred_username: username,
    name: user.name || username,
    email: user.email || `${username}@example.org`,
    email_verified: true,
    groups: user.groups || [],
    proposals: user.proposals || [],
    // The POSIX identity, as an SSO mapping the directory's attributes releases it.
    ...(user.posix || {}),
  };
}

const provider = new Provider(config.issuer, {
  clients: config.clients.map((client) => ({
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
    ...client,
  })),
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
    proposals: ['proposals'],
    posix: ['uidNumber', 'gidNumber', 'homeDirectory', 'loginShell'],
  },
  scopes: SCOPES,
  cookies: { keys: config.cookie_keys },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { AccessToken: 3600, AuthorizationCode: 600, IdToken: 3600, Interaction: 1800, Session: 86400, Grant: 86400 },
  async findAccount(ctx, id) {
    const claims = userClaims(id);
    if (!claims) return undefined;
    return { accountId: id, async claims() { return claims; } };
  },
  // hepsdesk is a first-party application of the facility: no consent screen.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope([...ctx.oidc.requestParamScopes].filter((s) => SCOPES.includes(s)).join(' '));
    grant.addOIDCClaims(Object.keys(ctx.oidc.requestParamClaims || {}));
    await grant.save();
    return grant;
  },
});

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, error = '', username = '') {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - facility SSO (development)</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font-family: system-ui, sans-serif; background: #f2f4f7; margin: 0; }
 main { max-width: 360px; margin: 10vh auto; background: #fff; padding: 2em; border-radius: 8px;
        box-shadow: 0 2px 12px rgba(0,0,0,.12); }
 h1 { font-size: 1.3em; margin-top: 0; } p.note { color: #555; font-size: .9em; }
 label { display: block; margin: 1em 0 .3em; } input { width: 100%; padding: .5em; box-sizing: border-box; }
 button { margin-top: 1.5em; width: 100%; padding: .6em; background: #1f5fa8; color: #fff; border: 0;
          border-radius: 4px; font-size: 1em; cursor: pointer; }
 .error { background: #fde8e8; color: #8a1c1c; padding: .7em; border-radius: 4px; }
</style></head>
<body><main>
 <h1>Facility single sign-on</h1>
 <p class="note">Development identity provider of hepsdesk. The demo accounts are printed by <code>hepsdesk demo</code>.</p>
 ${error ? `<p class="error" role="alert">${escape(error)}</p>` : ''}
 <form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
  <label for="username">Username</label><input id="username" name="username" value="${escape(username)}" required autofocus>
  <label for="password">Password</label><input id="password" name="password" type="password" required>
  <button type="submit">Sign in</button>
 </form>
</main></body></html>`;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (chunk) => {
      data += chunk;
      if (data.length > 10000) reject(new Error('request body too large'));
    });
    req.on('end', () => resolve(querystring.parse(data)));
    req.on('error', reject);
  });
}

function send(res, status, html) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(html);
}

async function handleInteraction(req, res, path) {
  const details = await provider.interactionDetails(req, res);
  const uid = details.uid;
  if (req.method === 'GET' && path === `/interaction/${uid}`) {
    return send(res, 200, loginPage(uid));
  }
  if (req.method === 'POST' && path === `/interaction/${uid}/login`) {
    const form = await readBody(req);
    const username = String(form.username || '').trim();
    const user = readConfig().users[username];
    if (!user || user.password !== form.password) {
      console.log(`hepsdesk-oidc: failed login for ${JSON.stringify(username)}`);
      return send(res, 401, loginPage(uid, 'Unknown user or wrong password.', username));
    }
    console.log(`hepsdesk-oidc: ${username} signed in`);
    return provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
  }
  return send(res, 404, 'not found');
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  const path = new URL(req.url, config.issuer).pathname;
  try {
    if (path.startsWith('/interaction/')) {
      await handleInteraction(req, res, path);
    } else {
      callback(req, res);
    }
  } catch (error) {
    console.error(`hepsdesk-oidc: ${req.method} ${path}: ${error.message}`);
    if (!res.headersSent) {
      send(res, 400, `<p>This sign-in attempt cannot continue (${escape(error.message)}).
        Go back to the application and sign in again.</p>`);
    }
  }
});
server.listen(config.port, '127.0.0.1', () => {
  console.log(`hepsdesk-oidc: issuer ${config.issuer} listening on 127.0.0.1:${config.port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
