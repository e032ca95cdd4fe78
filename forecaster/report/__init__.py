"""The weekly capacity-planning report and its charts.

Nothing is imported here: the charts load matplotlib and numpy, and the command line imports this
package's parents without wanting either. Import ``forecaster.report.charts`` where charts are
drawn.
"""
