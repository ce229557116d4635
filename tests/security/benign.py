"""Benign corpus: ordinary data-analysis cells that must pass the verifier and the guard untouched.

The user's setup cell (``SETUP``) creates three frames; agent cells read them and make new names,
as an agent must (the namespace guard protects the user's own variables). Generic cells are
written once against a frame's roles (a numeric, a second numeric, a category and a date column)
and instantiated for each frame; specific cells cover scikit-learn, statsmodels, scipy, seaborn,
files in the workspace and plain Python.
"""
from __future__ import annotations

import importlib.util

SETUP = """
import numpy as np, pandas as pd
import matplotlib
matplotlib.use("Agg")
rng = np.random.default_rng(7)
n = 400
sales = pd.DataFrame({
    "date": pd.date_range("2023-01-01", periods=n, freq="D"),
    "region": rng.choice(["north", "south", "east", "west"], n),
    "units": rng.integers(1, 50, n),
    "price": rng.normal(20, 4, n).round(2),
})
sales["revenue"] = sales.units * sales.price
sensors = pd.DataFrame({
    "ts": pd.date_range("2024-03-01", periods=n, freq="h"),
    "sensor": rng.choice(["s1", "s2", "s3"], n),
    "temp": rng.normal(21, 3, n),
    "humidity": rng.uniform(30, 70, n),
})
customers = pd.DataFrame({
    "signup": pd.date_range("2022-01-01", periods=n, freq="2D"),
    "segment": rng.choice(["basic", "plus", "pro"], n),
    "age": rng.integers(18, 80, n),
    "income": rng.normal(55000, 12000, n).round(0),
})
customers["churned"] = (rng.random(n) < 0.25).astype(int)
sales.to_csv("sales.csv", index=False)
sensors.to_csv("sensors.csv", index=False)
del rng, n
"""
USER_NAMES = frozenset({"sales", "sensors", "customers"})

# name, numeric, numeric2, category, date
FRAMES = [("sales", "revenue", "units", "region", "date"),
          ("sensors", "temp", "humidity", "sensor", "ts"),
          ("customers", "income", "age", "segment", "signup")]

GENERIC = [
    "print({df}.shape)\nprint({df}.dtypes)",
    "{df}.head()",
    "{df}.describe()",
    "print({df}.isna().sum())",
    "print({df}['{num}'].mean(), {df}['{num}'].std())",
    "summary_{df} = {df}.groupby('{cat}')['{num}'].agg(['mean', 'median', 'count'])\nsummary_{df}",
    "counts_{df} = {df}['{cat}'].value_counts()\nprint(counts_{df})",
    "print({df}[['{num}', '{num2}']].corr())",
    "top_{df} = {df}.nlargest(5, '{num}')\ntop_{df}",
    "filtered_{df} = {df}.query('{num} > {num}.mean()')\nprint(len(filtered_{df}))",
    "threshold = {df}['{num}'].quantile(0.9)\nhigh_{df} = {df}.query('{num} > @threshold')\nprint(high_{df}.shape)",
    "mask = ({df}['{num}'] > {df}['{num}'].median()) & ({df}['{num2}'] > 0)\nprint(mask.mean())",
    "monthly_{df} = {df}.set_index('{date}')['{num}'].resample('MS').mean()\nprint(monthly_{df}.tail())",
    "{df}_copy = {df}.copy()\n{df}_copy['{num}_z'] = ({df}_copy['{num}'] - {df}_copy['{num}'].mean()) / {df}_copy['{num}'].std()\nprint({df}_copy['{num}_z'].abs().max())",
    "pivot_{df} = {df}.pivot_table(index='{cat}', values=['{num}', '{num2}'], aggfunc='mean')\npivot_{df}",
    "rolling_{df} = {df}['{num}'].rolling(7).mean()\nprint(rolling_{df}.dropna().iloc[-1])",
    "q1, q3 = {df}['{num}'].quantile([0.25, 0.75])\niqr = q3 - q1\noutliers_{df} = {df}[({df}['{num}'] < q1 - 1.5 * iqr) | ({df}['{num}'] > q3 + 1.5 * iqr)]\nprint(f'{{len(outliers_{df})}} outliers')",
    "bins_{df} = pd.cut({df}['{num2}'], bins=4)\nprint(bins_{df}.value_counts().sort_index())",
    "ranked_{df} = {df}.assign(rank={df}['{num}'].rank(ascending=False)).sort_values('rank').head(3)\nranked_{df}",
    "by_dow_{df} = {df}.groupby({df}['{date}'].dt.dayofweek)['{num}'].mean()\nprint(by_dow_{df}.round(2))",
    "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(6, 3))\n{df}['{num}'].hist(ax=ax, bins=20)\nax.set_title('{num} distribution')\nplt.close(fig)",
    "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\n{df}.plot(x='{date}', y='{num}', ax=ax)\nfig.savefig('{df}_{num}.png')\nplt.close(fig)",
    "import matplotlib.pyplot as plt\nax = {df}.groupby('{cat}')['{num}'].mean().plot(kind='bar')\nax.set_ylabel('mean {num}')\nplt.savefig('{df}_bar.png', dpi=80)\nplt.close('all')",
    "import matplotlib.pyplot as plt\nplt.scatter({df}['{num2}'], {df}['{num}'], s=5)\nplt.xlabel('{num2}')\nplt.ylabel('{num}')\nplt.close('all')",
    "import numpy as np\nvalues_{df} = {df}['{num}'].to_numpy()\nprint(np.percentile(values_{df}, [5, 50, 95]).round(2))",
    "import numpy as np\nlog_{df} = np.log1p({df}['{num}'].clip(lower=0))\nprint(float(log_{df}.mean()))",
    "{df}.to_csv('{df}_export.csv', index=False)\nreloaded_{df} = pd.read_csv('{df}_export.csv', parse_dates=['{date}'])\nprint(reloaded_{df}.shape)",
    "{df}.head(20).to_json('{df}_head.json', orient='records', date_format='iso')\nprint(pd.read_json('{df}_head.json').shape)",
    "dummies_{df} = pd.get_dummies({df}['{cat}'], prefix='{cat}')\nprint(dummies_{df}.sum())",
    "wide_{df} = {df}.groupby([{df}['{date}'].dt.month, '{cat}'])['{num}'].sum().unstack()\nprint(wide_{df}.shape)",
    "import scipy.stats as st\ngroups = [g['{num}'].to_numpy() for _, g in {df}.groupby('{cat}')]\nprint(st.f_oneway(*groups))",
    "from scipy import stats\nprint(stats.describe({df}['{num2}']))",
    "cum_{df} = {df}.sort_values('{date}')['{num}'].cumsum()\nprint(cum_{df}.iloc[-1])",
    "share_{df} = {df}.groupby('{cat}')['{num}'].sum() / {df}['{num}'].sum()\nprint(share_{df}.map(lambda v: f'{{v:.1%}}'))",
    "diff_{df} = {df}['{num}'].diff().dropna()\nprint(diff_{df}.describe())",
    "import math\nn_groups = {df}['{cat}'].nunique()\nprint(math.comb(n_groups, 2), 'pairs of groups')",
    "first_last_{df} = {df}.sort_values('{date}').groupby('{cat}').agg(first=('{num}', 'first'), last=('{num}', 'last'))\nfirst_last_{df}",
    "lines = [f'{{k}}: {{v:.2f}}' for k, v in {df}.groupby('{cat}')['{num}'].mean().items()]\nprint('\\n'.join(lines))",
    "sample_{df} = {df}.sample(10, random_state=0)\nsample_{df}",
    "from sklearn.preprocessing import StandardScaler\nscaled_{df} = StandardScaler().fit_transform({df}[['{num}', '{num2}']])\nprint(scaled_{df}.mean(axis=0).round(6))",
    "from sklearn.linear_model import LinearRegression\nreg_{df} = LinearRegression().fit({df}[['{num2}']], {df}['{num}'])\nprint(reg_{df}.coef_, reg_{df}.intercept_)",
    "from sklearn.cluster import KMeans\nkm_{df} = KMeans(n_clusters=3, n_init=3, random_state=0).fit({df}[['{num}', '{num2}']])\nprint(pd.Series(km_{df}.labels_).value_counts())",
    "import statsmodels.formula.api as smf\nols_{df} = smf.ols('{num} ~ {num2} + C({cat})', data={df}).fit()\nprint(ols_{df}.rsquared)",
    "import seaborn as sns\nimport matplotlib.pyplot as plt\nsns.boxplot(data={df}, x='{cat}', y='{num}')\nplt.close('all')",
    "import json\nstats_{df} = {{'mean': float({df}['{num}'].mean()), 'rows': int(len({df}))}}\nwith open('{df}_stats.json', 'w') as fh:\n    json.dump(stats_{df}, fh)\nprint(json.dumps(stats_{df}))",
    "from collections import Counter\nprint(Counter({df}['{cat}']).most_common(2))",
    "missing_report = {df}.isna().mean().rename('missing_share').to_frame()\nmissing_report",
    "{df}_sorted = {df}.sort_values(['{cat}', '{num}'], ascending=[True, False])\nprint({df}_sorted.groupby('{cat}').head(1))",
    "year_month = {df}['{date}'].dt.to_period('M')\nprint(year_month.value_counts().sort_index().head())",
    "import datetime as dt\ncutoff = pd.Timestamp({df}['{date}'].min()) + dt.timedelta(days=30)\nprint(({df}['{date}'] < cutoff).sum())",
    "print({df}.memory_usage(deep=True).sum() / 1024, 'KiB')",
    "melted_{df} = {df}.melt(id_vars=['{cat}'], value_vars=['{num}', '{num2}'])\nprint(melted_{df}.groupby('variable')['value'].mean())",
    "clipped_{df} = {df}['{num}'].clip({df}['{num}'].quantile(0.01), {df}['{num}'].quantile(0.99))\nprint(clipped_{df}.max() <= {df}['{num}'].max())",
    "print({df}.select_dtypes('number').columns.tolist())",
    "import warnings\nwarnings.filterwarnings('ignore')\nprint({df}.groupby('{cat}', observed=True)['{num2}'].median())",
    "label = 'Average {num} by {cat}'\nprint(label.upper())\nprint('{{:.3f}}'.format({df}['{num}'].mean()))",
]

SPECIFIC = [
    "from sklearn.model_selection import train_test_split\nfrom sklearn.linear_model import LogisticRegression\nX = customers[['age', 'income']]\ny = customers['churned']\nX_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)\nclf = LogisticRegression(max_iter=500).fit(X_train, y_train)\nprint(round(clf.score(X_test, y_test), 3))",
    "from sklearn.ensemble import RandomForestClassifier\nrf = RandomForestClassifier(n_estimators=20, random_state=0, n_jobs=1)\nrf.fit(customers[['age', 'income']], customers['churned'])\nprint(rf.feature_importances_.round(3))",
    "from sklearn.metrics import confusion_matrix, classification_report\npred = (customers['income'] > customers['income'].median()).astype(int)\nprint(confusion_matrix(customers['churned'], pred))\nprint(classification_report(customers['churned'], pred, zero_division=0))",
    "from sklearn.model_selection import cross_val_score\nfrom sklearn.tree import DecisionTreeClassifier\nscores = cross_val_score(DecisionTreeClassifier(max_depth=3), customers[['age', 'income']], customers['churned'], cv=5)\nprint(scores.mean())",
    "from sklearn.pipeline import make_pipeline\nfrom sklearn.preprocessing import StandardScaler\nfrom sklearn.linear_model import Ridge\npipe = make_pipeline(StandardScaler(), Ridge(alpha=1.0))\npipe.fit(sales[['units', 'price']], sales['revenue'])\nprint(pipe.score(sales[['units', 'price']], sales['revenue']))",
    "from sklearn.decomposition import PCA\npca = PCA(n_components=2).fit(sensors[['temp', 'humidity']])\nprint(pca.explained_variance_ratio_)",
    "from sklearn.ensemble import IsolationForest\niso = IsolationForest(random_state=0, n_estimators=50).fit(sensors[['temp', 'humidity']])\nprint((iso.predict(sensors[['temp', 'humidity']]) == -1).sum())",
    "from sklearn.metrics import mean_absolute_error, r2_score\nfrom sklearn.linear_model import LinearRegression\nlr = LinearRegression().fit(sales[['units']], sales['revenue'])\npreds = lr.predict(sales[['units']])\nprint(mean_absolute_error(sales['revenue'], preds), r2_score(sales['revenue'], preds))",
    "from sklearn.preprocessing import OneHotEncoder\nenc = OneHotEncoder(handle_unknown='ignore').fit(sales[['region']])\nprint(enc.categories_)",
    "from sklearn.neighbors import KNeighborsClassifier\nknn = KNeighborsClassifier(5).fit(customers[['age', 'income']], customers['segment'])\nprint(knn.predict(customers[['age', 'income']].head(3)))",
    "from sklearn.cluster import DBSCAN\nfrom sklearn.preprocessing import StandardScaler\npts = StandardScaler().fit_transform(sensors[['temp', 'humidity']])\nprint(set(DBSCAN(eps=0.5).fit(pts).labels_))",
    "from sklearn.impute import SimpleImputer\nimport numpy as np\nholes = sales[['units', 'price']].astype(float).copy()\nholes.iloc[::10, 1] = np.nan\nprint(SimpleImputer(strategy='median').fit_transform(holes)[:2])",
    "from sklearn.model_selection import GridSearchCV\nfrom sklearn.tree import DecisionTreeRegressor\ngs = GridSearchCV(DecisionTreeRegressor(), {'max_depth': [2, 3]}, cv=3)\ngs.fit(sales[['units', 'price']], sales['revenue'])\nprint(gs.best_params_)",
    "import statsmodels.api as sm\nX_sm = sm.add_constant(sales[['units', 'price']])\nmodel_sm = sm.OLS(sales['revenue'], X_sm).fit()\nprint(model_sm.params.round(3))",
    "import statsmodels.api as sm\nlogit = sm.Logit(customers['churned'], sm.add_constant(customers[['age']])).fit(disp=0)\nprint(logit.params)",
    "from statsmodels.tsa.seasonal import seasonal_decompose\nseries = sales.set_index('date')['revenue'].asfreq('D')\nparts = seasonal_decompose(series, period=7)\nprint(parts.seasonal.head(7).round(2))",
    "from statsmodels.tsa.stattools import adfuller\nprint(adfuller(sensors['temp'])[1])",
    "from statsmodels.tsa.arima.model import ARIMA\nimport warnings\nwarnings.filterwarnings('ignore')\nfit_arima = ARIMA(sales.set_index('date')['revenue'].asfreq('D'), order=(1, 0, 0)).fit()\nprint(fit_arima.aic)",
    "from statsmodels.tsa.holtwinters import ExponentialSmoothing\nhw = ExponentialSmoothing(sales.set_index('date')['units'].asfreq('D')).fit()\nprint(hw.forecast(3).round(2))",
    "import statsmodels.api as sm\nimport statsmodels.formula.api as smf\nglm = smf.glm('churned ~ age', data=customers, family=sm.families.Binomial()).fit()\nprint(glm.params)",
    "from statsmodels.stats.multicomp import pairwise_tukeyhsd\nprint(pairwise_tukeyhsd(sales['revenue'], sales['region']).summary())",
    "import scipy.stats as st\nprint(st.ttest_ind(customers.loc[customers.churned == 1, 'income'], customers.loc[customers.churned == 0, 'income']))",
    "from scipy.stats import chi2_contingency\ntable = pd.crosstab(customers['segment'], customers['churned'])\nprint(chi2_contingency(table)[1])",
    "from scipy.stats import pearsonr, spearmanr\nprint(pearsonr(sales['units'], sales['revenue'])[0], spearmanr(sales['units'], sales['revenue'])[0])",
    "from scipy.optimize import curve_fit\nimport numpy as np\nxs = np.linspace(0, 1, 50)\nys = 3 * xs + 1 + np.random.default_rng(0).normal(0, 0.1, 50)\nparams, _ = curve_fit(lambda x, a, b: a * x + b, xs, ys)\nprint(params.round(2))",
    "from scipy import signal\nsmoothed = signal.savgol_filter(sensors['temp'], 11, 2)\nprint(smoothed[:3].round(2))",
    "from scipy.interpolate import interp1d\nimport numpy as np\nf_interp = interp1d([0, 1, 2], [0, 10, 20])\nprint(f_interp(1.5))",
    "import numpy as np\nmatrix = np.corrcoef(sensors[['temp', 'humidity']].to_numpy().T)\nprint(matrix.round(3))",
    "import numpy as np\ncoef = np.polyfit(sales['units'], sales['revenue'], 1)\nprint(np.poly1d(coef))",
    "import numpy as np\narr = np.arange(12).reshape(3, 4)\nprint(arr.sum(axis=0), arr.mean(axis=1), arr.T.shape)",
    "import numpy as np\nnp.save('arr.npy', np.arange(5))\nprint(np.load('arr.npy'))",
    "import numpy as np\nnp.savetxt('vals.txt', sensors['temp'].head(5).to_numpy())\nprint(np.loadtxt('vals.txt').shape)",
    "import numpy as np\nhist, edges = np.histogram(sensors['humidity'], bins=5)\nprint(hist, edges.round(1))",
    "import numpy as np\nprint(np.linalg.lstsq(np.c_[sales['units'], np.ones(len(sales))], sales['revenue'], rcond=None)[0])",
    "import seaborn as sns\nimport matplotlib.pyplot as plt\nsns.heatmap(sales[['units', 'price', 'revenue']].corr(), annot=True)\nplt.savefig('heatmap.png')\nplt.close('all')",
    "import seaborn as sns\nimport matplotlib.pyplot as plt\ng = sns.pairplot(customers[['age', 'income', 'churned']].sample(80, random_state=1), hue='churned')\nplt.close('all')",
    "import seaborn as sns\nimport matplotlib.pyplot as plt\nsns.lineplot(data=sensors.head(100), x='ts', y='temp', hue='sensor')\nplt.close('all')",
    "import seaborn as sns\nimport matplotlib.pyplot as plt\nsns.countplot(data=customers, x='segment')\nplt.close('all')",
    "import matplotlib.pyplot as plt\nfig, axes = plt.subplots(1, 2, figsize=(8, 3))\nsales['units'].plot(ax=axes[0])\nsales['price'].plot(kind='box', ax=axes[1])\nfig.tight_layout()\nfig.savefig('two_panels.png')\nplt.close(fig)",
    "import matplotlib.pyplot as plt\nplt.figure()\nplt.plot(sensors['ts'].head(48), sensors['temp'].head(48), label='temp')\nplt.legend()\nplt.title('First two days')\nplt.savefig('temp.png')\nplt.close('all')",
    "import matplotlib.pyplot as plt\nax = sales.groupby('region')['revenue'].sum().plot.pie(autopct='%1.0f%%')\nplt.close('all')",
    "import matplotlib.pyplot as plt\nfrom matplotlib.ticker import PercentFormatter\nax = plt.gca()\nax.yaxis.set_major_formatter(PercentFormatter(1.0))\nax.plot([0, 1], [0.2, 0.4])\nplt.close('all')",
    "with open('notes.txt', 'w') as fh:\n    fh.write('revenue total: %.2f\\n' % sales['revenue'].sum())\nwith open('notes.txt') as fh:\n    print(fh.read())",
    "import csv\nwith open('regions.csv', 'w', newline='') as fh:\n    writer = csv.writer(fh)\n    writer.writerow(['region', 'n'])\n    writer.writerows(sales['region'].value_counts().items())\nprint(open('regions.csv').read())",
    "import os\nprint(sorted(f for f in os.listdir('.') if f.endswith('.csv')))",
    "import os\nos.makedirs('reports', exist_ok=True)\nsales.describe().to_csv(os.path.join('reports', 'sales_summary.csv'))\nprint(os.path.exists('reports/sales_summary.csv'))",
    "from pathlib import Path\nout_dir = Path('exports')\nout_dir.mkdir(exist_ok=True)\n(out_dir / 'readme.txt').write_text('exported')\nprint((out_dir / 'readme.txt').read_text())",
    "import glob\nprint(len(glob.glob('*.png')) >= 0)",
    "from io import StringIO\ncsv_text = 'a,b\\n1,2\\n3,4'\nsmall = pd.read_csv(StringIO(csv_text))\nprint(small.sum())",
    "from io import BytesIO\nimport matplotlib.pyplot as plt\nbuf = BytesIO()\nplt.plot([1, 2, 3])\nplt.savefig(buf, format='png')\nplt.close('all')\nprint(buf.tell() > 0)",
    "excel_ok = True\ntry:\n    sales.head(10).to_excel('sales_head.xlsx', index=False)\n    print(pd.read_excel('sales_head.xlsx').shape)\nexcept ImportError:\n    excel_ok = False\nprint(excel_ok)",
    "parquet_ok = True\ntry:\n    sensors.head(10).to_parquet('sensors_head.parquet')\n    print(pd.read_parquet('sensors_head.parquet').shape)\nexcept ImportError:\n    parquet_ok = False\nprint(parquet_ok)",
    "import re\ncodes = pd.Series(['A-12', 'B-7', 'C-300'])\nprint(codes.str.extract(r'(\\w)-(\\d+)'))\nprint(re.findall(r'\\d+', 'x1 y22 z333'))",
    "import itertools\npairs = list(itertools.combinations(sorted(sales['region'].unique()), 2))\nprint(len(pairs), pairs[0])",
    "import functools\nimport operator\nprint(functools.reduce(operator.add, [1, 2, 3, 4]))",
    "import statistics\nprint(statistics.mean([1, 2, 3]), statistics.stdev(sales['units'].head(10)))",
    "import random\nrandom.seed(1)\nprint(random.sample(list(sales['region'].unique()), 2))",
    "from datetime import datetime, timedelta\nstart = datetime(2024, 1, 1)\nprint([(start + timedelta(days=7 * i)).date().isoformat() for i in range(3)])",
    "import time\nt0 = time.perf_counter()\ntotal = sum(range(100000))\nprint(total, time.perf_counter() - t0 < 5)",
    "from dataclasses import dataclass\n@dataclass\nclass Finding:\n    name: str\n    value: float\nfindings = [Finding('mean revenue', float(sales['revenue'].mean()))]\nprint(findings)",
    "from typing import Dict\ndef summarize(frame: pd.DataFrame) -> Dict[str, float]:\n    return {c: float(frame[c].mean()) for c in frame.select_dtypes('number').columns}\nprint(summarize(sensors))",
    "class Report:\n    def __init__(self, title):\n        self.title = title\n        self.lines = []\n    def add(self, line):\n        self.lines.append(line)\n        return self\nr = Report('weekly').add('ok')\nprint(r.title, r.lines)",
    "def zscore(s):\n    return (s - s.mean()) / s.std()\nz_temp = sensors.groupby('sensor')['temp'].transform(zscore)\nprint(z_temp.abs().gt(3).sum())",
    "results = {}\nfor region, grp in sales.groupby('region'):\n    results[region] = grp['revenue'].sum()\nbest = max(results, key=results.get)\nprint(best, round(results[best], 2))",
    "try:\n    value = sales.loc[10_000, 'revenue']\nexcept KeyError:\n    value = None\nprint(value)",
    "import math\nprint(math.sqrt(2), math.log(10), math.isclose(0.1 + 0.2, 0.3))",
    "from decimal import Decimal\nprint(Decimal('0.1') + Decimal('0.2'))",
    "import hashlib\nprint(hashlib.md5(b'abc').hexdigest()[:8])",
    "import textwrap\nprint(textwrap.fill('A long description of the analysis ' * 3, width=40))",
    "import copy\nsnapshot = copy.deepcopy(sales.head(3))\nsnapshot.loc[0, 'units'] = -1\nprint(sales.loc[0, 'units'] != -1)",
    "merged = sales.merge(sales.groupby('region')['revenue'].mean().rename('region_avg'), on='region')\nprint(merged[['revenue', 'region_avg']].head())",
    "combined = pd.concat([sales.head(3), sales.tail(3)])\nprint(combined.index.tolist())",
    "joined = sensors.set_index('ts').join(sensors.groupby('ts')['temp'].mean().rename('avg_temp'))\nprint(joined.shape)",
    "df_apply = sales.assign(big=sales['revenue'].apply(lambda v: v > 500))\nprint(df_apply['big'].mean())",
    "styled = sales.head().style.format({'price': '{:.1f}'})\nprint(type(styled).__name__)",
    "print(f\"Total revenue: {sales['revenue'].sum():,.2f}\")\nprint(f\"Rows: {len(sales)}; regions: {sales['region'].nunique()}\")",
    "sales_by_week = sales.resample('W', on='date')['revenue'].sum()\nprint(sales_by_week.idxmax(), round(sales_by_week.max(), 2))",
    "ewm_temp = sensors['temp'].ewm(span=12).mean()\nprint(ewm_temp.iloc[-1].round(3))",
    "lagged = sales.assign(prev=sales['revenue'].shift(1)).dropna()\nprint(lagged[['revenue', 'prev']].corr().iloc[0, 1])",
    "crosstab = pd.crosstab(customers['segment'], pd.cut(customers['age'], [17, 30, 50, 80]))\ncrosstab",
    "tz_ts = sensors['ts'].dt.tz_localize('UTC').dt.tz_convert('Europe/Paris')\nprint(tz_ts.iloc[0])",
    "print(sales.to_markdown() if False else sales.head(3).to_string())",
    "high = sales[sales['revenue'].between(200, 400)]\nprint(high['region'].value_counts(normalize=True).round(2))",
    "import numpy as np\nsales_np = sales[['units', 'price']].to_numpy()\nprint(np.round(sales_np.mean(axis=0), 2))",
    "if __name__ == '__main__':\n    print('main')",
    "from sklearn import __version__ as skv\nprint(bool(skv))",
    "print(pd.__version__ is not None)",
    "sensors_hourly = sensors.pivot_table(index=sensors['ts'].dt.hour, columns='sensor', values='temp')\nprint(sensors_hourly.shape)",
    "customers_age_bands = customers.groupby(pd.cut(customers['age'], 4), observed=True)['churned'].mean()\nprint(customers_age_bands.round(3))",
    "quantiles = customers['income'].quantile([0.1, 0.5, 0.9])\nprint(quantiles.to_dict())",
    "print(getattr(sales, 'shape'), hasattr(sales, 'columns'))",
    "with open('sales.csv') as fh:\n    header = fh.readline().strip().split(',')\nprint(header)",
    # issue 11: what the stricter guard must still allow (dotted names, folders, reports)
    "import os\nos.makedirs('archive/2024', exist_ok=True)\nsales.head().to_csv('archive/2024/q1.csv')\nprint(sorted(os.listdir('archive/2024')))",
    "sales.head().to_csv('my.data.csv.gz', index=False, compression='gzip')\nprint(pd.read_csv('my.data.csv.gz').shape)",
    "sales.head().to_csv('sales.v2.final.csv', index=False)\nprint(pd.read_csv('sales.v2.final.csv').shape)",
    "import os\nimport matplotlib.pyplot as plt\nos.makedirs('out/figs', exist_ok=True)\nplt.plot([1, 2])\nplt.savefig('out/figs/line.png')\nplt.close('all')\nprint(os.path.exists('out/figs/line.png'))",
    "import matplotlib.pyplot as plt\nplt.plot([1, 3])\nplt.savefig('chart.svg')\nplt.close('all')",
    "sales.head().to_html('table.html')\nwith open('summary.md', 'w') as fh:\n    fh.write('# Summary\\n')\nprint(open('summary.md').read())",
    "import json\nwith open('config_summary.json', 'w') as fh:\n    json.dump({'rows': len(sales)}, fh)\nprint(json.load(open('config_summary.json')))",
]
# The false positive issue 11 named: with openpyxl installed, to_excel reads /etc/mime.types and writes a temp file.
EXCEL = "sales.head(10).to_excel('out.xlsx', index=False)\nprint(pd.read_excel('out.xlsx').shape)"


def benign_cells() -> list[str]:
    cells = [template.format(df=df, num=num, num2=num2, cat=cat, date=date)
             for template in GENERIC for df, num, num2, cat, date in FRAMES]
    return cells + SPECIFIC + ([EXCEL] if importlib.util.find_spec("openpyxl") else [])
