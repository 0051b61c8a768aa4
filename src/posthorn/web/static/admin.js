/* posthorn admin pages: domains, accounts, aliases, the queue, DNS records.
 *
 * Uses the helpers of app.js (window.Posthorn) and the /api/admin routes (docs/web-api.md).
 * Everything shown is inserted with textContent; questions go through #ask-dialog.
 *
 * Stable test hooks (data-testid), which browser tests rely on:
 *   admin-forbidden (shown to accounts without the admin flag), admin-error, account,
 *   webmail-link, logout
 *   tabs          tab-domains, tab-accounts, tab-aliases, tab-queue, tab-dns
 *                 (the active tab has aria-selected="true"); their panels panel-domains,
 *                 panel-accounts, panel-aliases, panel-queue, panel-dns
 *   domains       domain-name, domain-add, domains-table, domain-row (data-domain),
 *                 domain-delete
 *   accounts      account-address, account-password, account-quota, account-admin,
 *                 account-add, accounts-table, account-row (data-address, data-enabled),
 *                 account-toggle (disable/enable), account-reset-password, account-set-quota,
 *                 account-delete
 *   aliases       alias-source, alias-targets, alias-add, aliases-table, alias-row
 *                 (data-source), alias-delete
 *   queue         queue-refresh, queue-table, queue-row (data-id), queue-show, queue-retry,
 *                 queue-delete, queue-detail, queue-empty
 *   dns           dns-domain (a select), dns-table, dns-row
 */
"use strict";

function startAdmin() {
  const { api, el, $, status, ask } = Posthorn;
  const enc = encodeURIComponent;
  const TABS = ["domains", "accounts", "aliases", "queue", "dns"];

  function showError(err) {
    if (err.status === 401) return;
    if (err.status === 403) {
      forbidden();
      return;
    }
    $("admin-error").textContent = err.message;
    $("admin-error").hidden = false;
  }

  function forbidden() {
    $("admin-panels").hidden = true;
    $("admin-forbidden").hidden = false;
  }

  /* Run an admin action: clear the old error, report the new one, say what was done. */
  async function act(action, done) {
    $("admin-error").hidden = true;
    try {
      await action();
      if (done) status(done);
    } catch (err) {
      showError(err);
    }
  }

  function button(text, testid, onclick, extra = {}) {
    return el("button", { type: "button", text, "data-testid": testid, onclick, ...extra });
  }

  function cell(...children) {
    return el("td", {}, ...children);
  }

  function textCell(value) {
    return el("td", { text: value === null || value === undefined ? "" : value });
  }

  /* ---- tabs */

  function showTab(name) {
    for (const tab of TABS) {
      $(`panel-${tab}`).hidden = tab !== name;
    }
    for (const tabButton of document.querySelectorAll("[data-tab]")) {
      tabButton.setAttribute("aria-selected", tabButton.dataset.tab === name ? "true" : "false");
    }
    $("admin-error").hidden = true;
    const loaders = {
      domains: loadDomains,
      accounts: loadAccounts,
      aliases: loadAliases,
      queue: loadQueue,
      dns: loadDnsDomains,
    };
    act(loaders[name]);
  }

  /* ---- domains */

  async function loadDomains() {
    const list = await api("GET", "/api/admin/domains");
    $("domains-body").replaceChildren(
      ...list.map((domain) =>
        el(
          "tr",
          { "data-testid": "domain-row", "data-domain": domain.name },
          textCell(domain.unicode && domain.unicode !== domain.name
            ? `${domain.unicode} (${domain.name})` : domain.name),
          textCell(domain.accounts),
          textCell(domain.aliases),
          cell(button("Delete", "domain-delete", () => deleteDomain(domain.name))),
        ),
      ),
    );
  }

  async function deleteDomain(name) {
    if (!(await ask(`Delete the domain ${name}?`, { ok: "Delete" }))) return;
    await act(async () => {
      await api("DELETE", `/api/admin/domains/${enc(name)}`);
      await loadDomains();
    }, `Domain ${name} deleted.`);
  }

  $("domain-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("domain-name").value.trim();
    if (!name) return;
    act(async () => {
      await api("POST", "/api/admin/domains", { name });
      $("domain-name").value = "";
      await loadDomains();
    }, `Domain ${name} added.`);
  });

  /* ---- accounts */

  /* A quota as typed: empty is unlimited (null); anything else goes to the server as written,
   * which reads it as the CLI does ("1048576", "500M", "1G", "unlimited"). */
  function quotaValue(text) {
    const value = text.trim();
    return value ? value : null;
  }

  async function loadAccounts() {
    const accounts = await api("GET", "/api/admin/accounts");
    $("accounts-body").replaceChildren(
      ...accounts.map((account) => {
        const address = account.address;
        const enabled = account.enabled !== false;
        const quota = account.quota_text || "unlimited";
        return el(
          "tr",
          {
            "data-testid": "account-row",
            "data-address": address,
            "data-enabled": enabled ? "true" : "false",
            className: enabled ? "" : "disabled",
          },
          textCell(address + (account.admin ? " (admin)" : "")),
          textCell(quota),
          textCell(enabled ? "enabled" : "disabled"),
          cell(
            button(enabled ? "Disable" : "Enable", "account-toggle", () =>
              act(async () => {
                await api("PATCH", `/api/admin/accounts/${enc(address)}`, { enabled: !enabled });
                await loadAccounts();
              }, `${address} ${enabled ? "disabled" : "enabled"}.`),
            ),
            button("Reset password", "account-reset-password", () => resetPassword(address)),
            button("Quota", "account-set-quota", () => setQuota(address, quota)),
            button("Delete", "account-delete", () => deleteAccount(address)),
          ),
        );
      }),
    );
  }

  async function resetPassword(address) {
    const password = await ask(`New password for ${address}:`, { input: true, ok: "Set" });
    if (!password) return;
    await act(
      () => api("PATCH", `/api/admin/accounts/${enc(address)}`, { password }),
      `Password of ${address} changed.`,
    );
  }

  async function setQuota(address, current) {
    const text = await ask(`Quota for ${address} (e.g. 500M, 2G, unlimited):`, {
      input: true,
      value: current,
      ok: "Set",
    });
    if (text === null) return;
    await act(async () => {
      await api("PATCH", `/api/admin/accounts/${enc(address)}`, { quota: quotaValue(text) });
      await loadAccounts();
    }, `Quota of ${address} set.`);
  }

  async function deleteAccount(address) {
    const sure = await ask(`Delete the account ${address} and all its mail?`, { ok: "Delete" });
    if (!sure) return;
    await act(async () => {
      await api("DELETE", `/api/admin/accounts/${enc(address)}`);
      await loadAccounts();
    }, `Account ${address} deleted.`);
  }

  $("account-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const address = $("account-address").value.trim();
    const password = $("account-password").value;
    if (!address || !password) return;
    act(async () => {
      await api("POST", "/api/admin/accounts", {
        address,
        password,
        quota: quotaValue($("account-quota").value),
        admin: $("account-admin").checked,
      });
      $("account-form").reset();
      await loadAccounts();
    }, `Account ${address} added.`);
  });

  /* ---- aliases */

  async function loadAliases() {
    const aliases = await api("GET", "/api/admin/aliases");
    $("aliases-body").replaceChildren(
      ...aliases.map((alias) =>
        el(
          "tr",
          { "data-testid": "alias-row", "data-source": alias.source },
          textCell(alias.source),
          textCell((alias.targets || []).join(", ")),
          cell(button("Delete", "alias-delete", () => deleteAlias(alias.source))),
        ),
      ),
    );
  }

  async function deleteAlias(source) {
    if (!(await ask(`Delete the alias ${source}?`, { ok: "Delete" }))) return;
    await act(async () => {
      await api("DELETE", `/api/admin/aliases/${enc(source)}`);
      await loadAliases();
    }, `Alias ${source} deleted.`);
  }

  $("alias-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const source = $("alias-source").value.trim();
    const targets = $("alias-targets").value.split(/[\s,;]+/).filter(Boolean);
    if (!source || targets.length === 0) return;
    act(async () => {
      await api("POST", "/api/admin/aliases", { source, targets });
      $("alias-form").reset();
      await loadAliases();
    }, `Alias ${source} added.`);
  });

  /* ---- queue: one row per queued message (the records of `posthorn queue list --json`) */

  function recipientsText(entry) {
    return (entry.recipients || []).map((r) => `${r.address} (${r.state || r.status})`).join(", ");
  }

  async function loadQueue() {
    const entries = await api("GET", "/api/admin/queue");
    $("queue-detail").hidden = true;
    $("queue-body").replaceChildren(
      ...entries.map((entry) => {
        const id = entry.queue_id;
        return el(
          "tr",
          { "data-testid": "queue-row", "data-id": id },
          el("td", {}, el("code", { text: id })),
          textCell(entry.sender || "<>"),
          textCell(recipientsText(entry)),
          textCell(entry.state),
          textCell(entry.next_try),
          textCell(entry.last_error),
          cell(
            button("Show", "queue-show", () => act(() => showQueued(id))),
            button("Retry", "queue-retry", () =>
              act(async () => {
                await api("POST", `/api/admin/queue/${enc(id)}/retry`);
                await loadQueue();
              }, `${id} will be retried now.`),
            ),
            button("Delete", "queue-delete", () => deleteQueued(id)),
          ),
        );
      }),
    );
    $("queue-empty").hidden = entries.length > 0;
  }

  async function showQueued(id) {
    const detail = await api("GET", `/api/admin/queue/${enc(id)}`);
    $("queue-detail").textContent = JSON.stringify(detail, null, 2);
    $("queue-detail").hidden = false;
  }

  async function deleteQueued(id) {
    if (!(await ask(`Delete ${id} from the queue without delivering it?`, { ok: "Delete" }))) {
      return;
    }
    await act(async () => {
      await api("DELETE", `/api/admin/queue/${enc(id)}`);
      await loadQueue();
    }, `${id} deleted from the queue.`);
  }

  $("queue-refresh").addEventListener("click", () => act(loadQueue));

  /* ---- DNS records */

  async function loadDnsDomains() {
    const domains = (await api("GET", "/api/admin/domains")).map((domain) => domain.name);
    const select = $("dns-domain");
    const previous = select.value;
    select.replaceChildren(...domains.map((name) => el("option", { value: name, text: name })));
    if (domains.includes(previous)) select.value = previous;
    if (select.value) await loadDns(select.value);
    else $("dns-body").replaceChildren();
  }

  async function loadDns(domain) {
    const records = await api("GET", `/api/admin/dns/${enc(domain)}`);
    if ($("dns-domain").value !== domain) return; // another domain was chosen meanwhile
    $("dns-body").replaceChildren(
      ...records.map((record) =>
        el(
          "tr",
          { "data-testid": "dns-row" },
          textCell(record.type),
          textCell(record.name),
          el("td", {}, el("code", { text: record.value })),
          textCell(record.why),
        ),
      ),
    );
  }

  $("dns-domain").addEventListener("change", (event) => act(() => loadDns(event.target.value)));

  /* ---- start */

  for (const tabButton of document.querySelectorAll("[data-tab]")) {
    tabButton.addEventListener("click", () => showTab(tabButton.dataset.tab));
  }
  $("logout-button").addEventListener("click", () => Posthorn.logout());

  (async () => {
    const who = await Posthorn.me();
    $("account").textContent = who.account;
    if (!who.admin) {
      forbidden();
      return;
    }
    $("admin-panels").hidden = false;
    showTab("domains");
  })().catch(showError);
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.page === "admin") startAdmin();
});
