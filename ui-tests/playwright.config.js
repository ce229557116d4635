/**
 * Galata on Debian's Chromium (never a downloaded browser). Three Jupyter servers:
 *   8888 RTC on  + scripted LLM endpoint   (project "rtc")
 *   8889 RTC off + scripted LLM endpoint   (project "no-rtc")
 *   8890 no LLM endpoint configured        (project "unconfigured": first-run help)
 *   8892 a bad TaskWeaverLab config value  (project "bad-config": the sidebar shows the config error)
 *   8893 no taskweaver_lab server extension (project "no-server-extension": the sidebar explains the 404)
 * Tests start the scripted LLM server themselves (tests/helpers.ts) on LLM_PORT.
 */
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

const LLM_PORT = '18013';
const chromium = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

function server(port, env) {
  return {
    command: `jupyter lab --config jupyter_server_test_config.py --ServerApp.port=${port} --no-browser --ServerApp.log_level=WARN`,
    url: `http://localhost:${port}/lab`,
    timeout: 120 * 1000,
    reuseExistingServer: !process.env.CI,
    env: { ...process.env, OPENAI_BASE_URL: '', OPENAI_API_KEY: '', ...env }
  };
}

module.exports = {
  ...baseConfig,
  reporter: [['list'], ['html', { open: 'never' }]],
  workers: 1,
  retries: process.env.CI ? 1 : 0,
  timeout: 120 * 1000,
  use: {
    ...baseConfig.use,
    trace: 'retain-on-failure',
    video: 'off',
    launchOptions: {
      executablePath: chromium,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync'
      ]
    }
  },
  projects: [
    { name: 'rtc', testMatch: /(turn|magic|sidebar|a11y|save-example|connection)\.spec\.ts/, use: { baseURL: 'http://localhost:8888' } },
    // RTC off changes how cells reach the notebook: the turn, approval, magic and figure-link tests run here too;
    // the sidebar's own UI (keyboard, reload, notebook switching) and the server-side save are covered once, above.
    { name: 'no-rtc', testMatch: /(turn|approval|magic|sidebar)\.spec\.ts/, grepInvert: /keyboard|after a reload|switching, creating/,
      use: { baseURL: 'http://localhost:8889' } },
    { name: 'unconfigured', testMatch: /first-run\.spec\.ts/, use: { baseURL: 'http://localhost:8890' } },
    { name: 'bad-config', testMatch: /bad-config\.spec\.ts/, use: { baseURL: 'http://localhost:8892' } },
    { name: 'no-server-extension', testMatch: /no-server-extension\.spec\.ts/, use: { baseURL: 'http://localhost:8893' } }
  ],
  webServer: [
    server(8888, { TW_UI_LLM_PORT: LLM_PORT, TW_UI_RTC: '1' }),
    server(8889, { TW_UI_LLM_PORT: LLM_PORT, TW_UI_RTC: '0' }),
    server(8890, { TW_UI_LLM_PORT: '', TW_UI_RTC: '1' }),
    server(8892, { TW_UI_LLM_PORT: LLM_PORT, TW_UI_RTC: '1', TW_UI_BAD_CONFIG: '1' }),
    server(8893, { TW_UI_LLM_PORT: LLM_PORT, TW_UI_RTC: '1', TW_UI_NO_SERVER_EXTENSION: '1' })
  ]
};
module.exports.LLM_PORT = LLM_PORT;

// TW_UI_STUB=1: only the protocol stub (stub/tw_protocol_stub.py) on 8891, to check the sidebar without the
// real server side or an LLM. Never part of CI.
if (process.env.TW_UI_STUB === '1') {
  const stub = server(8891, { TW_UI_LLM_PORT: '', TW_UI_RTC: '0', TW_UI_STUB: '1', PYTHONPATH: `${__dirname}/stub` });
  module.exports.projects = [
    { name: 'stub', testMatch: /stub\.spec\.ts/, use: { baseURL: 'http://localhost:8891' } }
  ];
  module.exports.webServer = [stub];
}
