// The functions the namespace can run: the built-in ones and those it
// deployed, with their sizes and content hashes.

import { api } from './api.js';
import { h, section, errorBox, table, fmtBytes, fmtTime, shortHash } from './dom.js';

export function render(root, _route, signal) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  root.append(h('h1', {}, 'Functions'), body);
  api('/v1/functions', { signal }).then((fns) => {
    const kinds = [['builtin', 'Built-in'], ['deployed', 'Deployed']];
    body.replaceChildren(...kinds.map(([kind, title]) => {
      const list = fns.filter((f) => f.kind === kind).sort((a, b) => a.name.localeCompare(b.name));
      return section(`${title} (${list.length})`, list.length ? table([
        { title: 'Name', cell: (f) => h('code', {}, f.name) },
        { title: 'Description', cell: (f) => f.description ?? '' },
        kind === 'deployed' ? { title: 'Size', class: 'num', cell: (f) => fmtBytes(f.size_bytes) } : null,
        kind === 'deployed' ? { title: 'Digest', cell: (f) => shortHash(f.digest) } : null,
        kind === 'deployed' ? { title: 'Deployed', cell: (f) => fmtTime(f.deployed_at) } : null,
        { title: 'Bursts', cell: (f) => h('a', { href: `#/bursts?function=${encodeURIComponent(f.name)}`, 'aria-label': `bursts of ${f.name}` }, 'bursts') },
      ].filter(Boolean), list, { caption: `${title} functions` }) : h('p', { class: 'muted' },
        kind === 'deployed' ? 'None deployed in this namespace (volley deploy NAME FILE).' : 'None.'));
    }));
  }).catch((err) => { if (!signal.aborted) body.replaceChildren(errorBox(err)); });
}
