"""Recall of the lexical plugin ranker (``plugins.select_plugins``) on a synthetic registry.

30 plugins with TaskWeaver-style descriptions and 30 requests phrased the way users type them
(paraphrases, not the description's words where a user would not use them), each with the one
plugin it needs. Prints recall@limit for limits 1, 3 and 5 and the misses; exits 1 when
recall@5 < GOAL. Run: ``python benchmarks/plugin_recall.py``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskweaver_lab.plugins import PluginSpec, select_plugins  # noqa: E402

GOAL = 0.9
LIMIT = 5

# name: (description, parameter notes)
REGISTRY: dict[str, tuple[str, str]] = {
    "sql_pull_data": ("Run one read-only SQL SELECT query against a SQLite file or database URL and return rows as a DataFrame.", "query: SQL SELECT statement; database: SQLite path or SQLAlchemy URL"),
    "anomaly_detection": ("Detect anomalies (outliers) in a time series with the 3-sigma rule; adds a boolean Is_Anomaly column.", "df: time series data; time_col_name: timestamp column; value_col_name: numeric column"),
    "web_search": ("Search the web with a search engine and return the top result titles, links and snippets.", "query: search keywords"),
    "document_retriever": ("Retrieve passages relevant to a question from the local knowledge base of indexed documents.", "query: the question"),
    "send_email": ("Send an email message to a recipient address with a subject and body.", "to: recipient address; subject: subject line; body: message text"),
    "translate_text": ("Translate text from one language to another, for example English to French or German.", "text: the text; target_language: language code"),
    "speech_to_text": ("Transcribe an audio recording (wav, mp3) into text.", "audio_path: path of the audio file"),
    "text_to_speech": ("Synthesize spoken audio from text and save it as a wav file.", "text: what to say; voice: voice name"),
    "image_caption": ("Describe the content of an image or photo in a short caption.", "image_path: path of the picture"),
    "ocr_extract": ("Extract printed text from a scanned document image or PDF using OCR.", "path: image or PDF file"),
    "weather_forecast": ("Get the weather forecast (temperature, rain, wind) for a city for the next days.", "city: city name; days: how many days"),
    "stock_price": ("Fetch historical daily stock prices (open, close, volume) for a ticker symbol.", "ticker: symbol like MSFT; start: first date; end: last date"),
    "currency_convert": ("Convert an amount of money between currencies using current exchange rates.", "amount: money; from_currency: code; to_currency: code"),
    "sentiment_analysis": ("Classify the sentiment of texts such as reviews or tweets as positive, negative or neutral.", "texts: list of strings"),
    "text_summarize": ("Summarize a long text or article into a few sentences.", "text: the long text; max_sentences: length of the summary"),
    "forecast_time_series": ("Forecast future values of a time series with exponential smoothing.", "df: history; time_col_name: time column; value_col_name: values; horizon: steps ahead"),
    "cluster_data": ("Group the rows of a DataFrame into k clusters with k-means on the numeric columns.", "df: data; k: number of clusters"),
    "klarna_search": ("Search and compare product prices from online shops.", "query: product to look for; max_price: price limit"),
    "paper_summary": ("Summarize an academic research paper from its PDF file.", "pdf_path: path of the paper"),
    "ascii_render": ("Render a word or short text as large ASCII art letters.", "text: the word"),
    "tell_joke": ("Tell a random joke, optionally about a given topic.", "topic: what the joke is about"),
    "geocode_address": ("Look up latitude and longitude coordinates of a street address.", "address: postal address"),
    "calendar_events": ("List the meetings and events in the user's calendar between two dates.", "start: first date; end: last date"),
    "create_chart": ("Draw a bar, line or pie chart from a DataFrame and save it as a PNG image.", "df: data; kind: chart type; x: column; y: column"),
    "read_excel_sheet": ("Load one worksheet of an Excel xlsx workbook into a DataFrame.", "path: workbook file; sheet: sheet name"),
    "pdf_tables": ("Extract the tables found in a PDF report into DataFrames.", "pdf_path: the report"),
    "qr_code": ("Generate a QR code image that encodes a URL or text.", "data: what to encode"),
    "unit_convert": ("Convert a physical quantity between units such as miles and kilometres or pounds and kilograms.", "value: number; from_unit: unit; to_unit: unit"),
    "git_log": ("Show the recent commit history of a git repository.", "repo_path: repository folder; count: number of commits"),
    "slack_post": ("Post a message to a Slack channel.", "channel: channel name; text: message"),
}

QUERIES: list[tuple[str, str]] = [
    ("pull the rows of the orders table from shop.db", "sql_pull_data"),
    ("find outliers in my sensor readings time series", "anomaly_detection"),
    ("look up on the internet who won the 2022 world cup", "web_search"),
    ("what does our internal knowledge base say about vacation policy", "document_retriever"),
    ("email the report to alice@example.com", "send_email"),
    ("put this paragraph into German", "translate_text"),
    ("transcribe meeting.mp3", "speech_to_text"),
    ("read this sentence aloud and save the audio", "text_to_speech"),
    ("what is in the picture cat.jpg", "image_caption"),
    ("get the text out of the scanned invoice", "ocr_extract"),
    ("will it rain in Seattle tomorrow", "weather_forecast"),
    ("download MSFT closing prices for 2023", "stock_price"),
    ("how many euros is 250 dollars", "currency_convert"),
    ("are the customer reviews positive or negative", "sentiment_analysis"),
    ("give me a short summary of this article", "text_summarize"),
    ("predict next month's sales values from the history", "forecast_time_series"),
    ("segment customers into 4 groups with kmeans", "cluster_data"),
    ("find the cheapest running shoes in online shops", "klarna_search"),
    ("summarize the research paper attention.pdf", "paper_summary"),
    ("draw the word HELLO in ascii art", "ascii_render"),
    ("tell me something funny about cats", "tell_joke"),
    ("coordinates of 1600 Pennsylvania Avenue", "geocode_address"),
    ("what meetings do I have next week", "calendar_events"),
    ("make a bar chart of revenue by region", "create_chart"),
    ("open the budget sheet of finance.xlsx", "read_excel_sheet"),
    ("extract the tables from annual_report.pdf", "pdf_tables"),
    ("create a QR code for https://example.com", "qr_code"),
    ("convert 10 miles to kilometres", "unit_convert"),
    ("show the last 5 commits of this repository", "git_log"),
    ("post 'deploy done' to the #ops channel on slack", "slack_post"),
]


def registry() -> list[PluginSpec]:
    specs = []
    for name, (description, notes) in REGISTRY.items():
        params = tuple({"name": part.split(":")[0].strip(), "type": "str", "description": part.split(":", 1)[1].strip()}
                       for part in notes.split(";"))
        specs.append(PluginSpec(name, description, params, (), True, False, False, "", {}, "", "", ""))
    return specs


def recall(specs: list[PluginSpec], limit: int) -> tuple[float, list[str]]:
    misses = []
    for query, expected in QUERIES:
        if expected not in {s.name for s in select_plugins(specs, query, limit)}:
            misses.append(f"  {query!r} -> expected {expected}")
    return 1 - len(misses) / len(QUERIES), misses


def main() -> int:
    specs = registry()
    started = time.perf_counter()
    results = {limit: recall(specs, limit) for limit in (1, 3, LIMIT)}
    per_query_ms = (time.perf_counter() - started) * 1000 / (3 * len(QUERIES))
    for limit, (value, _) in results.items():
        print(f"recall@{limit}: {value:.3f}")
    print(f"{len(specs)} plugins, {len(QUERIES)} queries, {per_query_ms:.2f} ms per selection")
    value, misses = results[LIMIT]
    if misses:
        print(f"misses at limit {LIMIT}:\n" + "\n".join(misses))
    if value < GOAL:
        print(f"FAIL: recall@{LIMIT} {value:.3f} < goal {GOAL}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
