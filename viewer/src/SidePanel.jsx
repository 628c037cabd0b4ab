// The side panel: channels with their frame counts (updated while a writer records),
// export of a range of frames through the server, and detector settings as a tree.
import { useState } from 'react';

function SettingsTree({ value }) {
  if (value === null || typeof value !== 'object') {
    return <span className="ss-value">{String(value)}</span>;
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
  if (entries.length === 0) return <span className="ss-value">(empty)</span>;
  return (
    <ul className="ss-tree">
      {entries.map(([key, child]) =>
        child !== null && typeof child === 'object' ? (
          <li key={key}>
            <details open>
              <summary>{key}</summary>
              <SettingsTree value={child} />
            </details>
          </li>
        ) : (
          <li key={key}>
            <span className="ss-key">{key}</span>: <SettingsTree value={child} />
          </li>
        ),
      )}
    </ul>
  );
}

function ExportForm({ api, file, channels }) {
  const [path, setPath] = useState('');
  const [frames, setFrames] = useState('');
  const [format, setFormat] = useState('npy');
  const chosen = channels.find((c) => c.path === path) || channels[0];
  if (!chosen) return null;
  const params = new URLSearchParams({ file, path: chosen.path, format });
  if (frames.trim()) params.set('frames', frames.trim());
  return (
    <form className="ss-export" onSubmit={(e) => e.preventDefault()}>
      <label>
        channel{' '}
        <select value={chosen.path} onChange={(e) => setPath(e.target.value)} name="channel">
          {channels.map((c) => (
            <option key={c.path} value={c.path}>{c.name}</option>
          ))}
        </select>
      </label>
      <label>
        frames{' '}
        <input name="frames" value={frames} placeholder="all, or A:B" size={8} onChange={(e) => setFrames(e.target.value)} />
      </label>
      <label>
        as{' '}
        <select value={format} onChange={(e) => setFormat(e.target.value)} name="format">
          {['npy', 'tiff', 'h5', 'csv', 'txt'].map((f) => (
            <option key={f} value={f}>{f}</option>
          ))}
        </select>
      </label>
      <a className="ss-button" href={`${api}/export?${params}`} download data-testid="export-link">Export</a>
    </form>
  );
}

export default function SidePanel({ api, file, summary }) {
  if (!summary) return <aside className="ss-panel">Loading…</aside>;
  const { channels, settings } = summary;
  return (
    <aside className="ss-panel" data-testid="side-panel">
      <h3>Channels</h3>
      {channels.length === 0 ? <p>No channels.</p> : (
        <table className="ss-channels">
          <thead>
            <tr><th>channel</th><th>frames</th><th>frame</th><th>units</th></tr>
          </thead>
          <tbody>
            {channels.map((c) => (
              <tr key={c.path} title={c.path}>
                <td>{c.name}</td>
                <td className="ss-frames" data-channel={c.name}>{c.frames.toLocaleString('en')}</td>
                <td>{c.shape.length ? c.shape.join('×') : 'scalar'} {c.dtype}</td>
                <td>{c.units}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3>Export frames</h3>
      <ExportForm api={api} file={file} channels={channels} />
      <h3>Detector settings</h3>
      {Object.keys(settings).length === 0 ? <p>None in this file.</p> : (
        Object.entries(settings).map(([detector, tree]) => (
          <details key={detector} open className="ss-detector">
            <summary>{detector}</summary>
            <SettingsTree value={tree} />
          </details>
        ))
      )}
    </aside>
  );
}
